"""Cinder volume driver for Shoal's block daemon: a thin HTTP client of blockd's API.

Public: :class:`ShoalISCSIDriver`, :data:`shoal_opts`, :class:`BlockdHTTPClient`,
:class:`TokenSource`.

This is the only module of Shoal that imports ``cinder``: it is loaded by cinder-volume, in
Cinder's own environment (Shoal installed there with ``--no-deps``), and never by Shoal itself.
It uses ``requests`` (a Cinder dependency) because it runs in Cinder's eventlet-patched process;
blockd's own aiohttp code is never imported here.

Enable in cinder.conf::

    [DEFAULT]
    enabled_backends = shoal1
    [shoal1]
    volume_driver = blockd.cinder_driver.ShoalISCSIDriver
    volume_backend_name = shoal1
    shoal_blockd_url = http://blockd-node-1:9776
    # either a static token (blockd auth_mode = dev) ...
    shoal_blockd_token = blockd-dev-token
    # ... or Keystone service credentials (blockd auth_mode = keystone; role service or admin)
    shoal_auth_url = http://keystone:5000/v3
    shoal_username = cinder
    shoal_password = secret
    shoal_project_name = service
    shoal_verify_tls = true
    shoal_ca_file = /etc/ssl/certs/shoal-ca.pem

How Cinder's calls map to blockd (``blockd/API.md``): a Cinder volume is a blockd volume with the
same UUID (``provider_id`` keeps the blockd id, so a managed volume keeps its own); snapshots
likewise. ``create_export`` exports the volume to the connector's initiator (blockd generates the
CHAP pair once per volume and keeps it) and saves Cinder's usual ``provider_location`` /
``provider_auth`` strings; ``initialize_connection`` returns the iSCSI ``connection_info``
os-brick reads. Images go between Glance and the volume through blockd itself, never through an
attach on the cinder-volume host: raw is streamed; qcow2, vmdk, vdi, vhd and vhdx are converted by
blockd with qemu-img (an image it refuses is ``ImageUnacceptable``); uploads are raw. ``terminate_connection`` unexports the initiator unless another attachment of
the same initiator still uses it, and returns whether any initiator still needs the export, so
Cinder skips ``remove_export`` then. ``remove_export`` unexports every initiator that no
attached attachment uses (the whole target after the last detach, as Cinder's LVM driver does).
"""

from __future__ import annotations

import math
import threading
import time
from typing import Any

import requests
from cinder import exception, interface
from cinder.common import constants
from cinder.volume import configuration, driver
from oslo_config import cfg
from oslo_log import log as logging

LOG = logging.getLogger(__name__)

GiB = 1024**3
HTTP_TIMEOUT_S = 60.0  # one blockd call: creates/snapshots are O(1); an export runs tgtadm
TOKEN_MARGIN_S = 120.0  # a Keystone token is renewed this long before it expires
DEFAULT_TOKEN_LIFETIME_S = 3600.0  # when Keystone's answer has no parsable expires_at
AUTH_ATTEMPTS = 3  # one retry with a fresh token after a 401; retries after a 503
AUTH_RETRY_S = 1.0  # times the attempt number, after blockd's 503 (its Keystone unreachable)
IMAGE_TIMEOUT_S = 3600.0  # a large image over a slow link; the task reports its progress
TASK_POLL_S = 1.0  # how often a running blockd task is asked for its state
RAW_FORMATS = (None, "raw")  # blockd streams the bytes as they are: no conversion
# converted by blockd with qemu-img (Glance's names; blockd refuses backing files and the like)
CONVERTED_FORMATS = ("qcow2", "vmdk", "vdi", "vhd", "vhdx")
CONTAINER_FORMATS = (None, "bare")  # ova/docker/... wrap the disk: Cinder's LVM refuses them too

shoal_opts = [
    cfg.StrOpt(
        "shoal_blockd_url",
        default="http://127.0.0.1:9776",
        help="URL of the blockd API of the node that serves this backend.",
    ),
    cfg.StrOpt(
        "shoal_blockd_token",
        default="",
        secret=True,
        help="Static X-Auth-Token for blockd (blockd auth_mode = dev). Leave empty to use "
        "Keystone service credentials (shoal_auth_url, shoal_username, ...).",
    ),
    cfg.StrOpt("shoal_auth_url", default="", help="Keystone v3 endpoint, e.g. http://ks:5000/v3."),
    cfg.StrOpt("shoal_username", default="", help="Keystone user with role service or admin."),
    cfg.StrOpt("shoal_password", default="", secret=True, help="That user's password."),
    cfg.StrOpt("shoal_project_name", default="service", help="That user's project."),
    cfg.StrOpt("shoal_user_domain_name", default="Default", help="The user's domain."),
    cfg.StrOpt("shoal_project_domain_name", default="Default", help="The project's domain."),
    cfg.BoolOpt(
        "shoal_verify_tls",
        default=True,
        help="Verify blockd's and Keystone's TLS certificates (https URLs).",
    ),
    cfg.StrOpt("shoal_ca_file", default="", help="CA bundle for that verification."),
    cfg.StrOpt(
        "shoal_volume_backend_name",
        default="shoal",
        help="Backend (and pool) name reported to the scheduler when volume_backend_name is unset.",
    ),
    cfg.FloatOpt("shoal_http_timeout_s", default=HTTP_TIMEOUT_S, help="Timeout of one call."),
    cfg.FloatOpt(
        "shoal_image_timeout_s",
        default=IMAGE_TIMEOUT_S,
        help="How long an image download by blockd into a volume may take.",
    ),
]
cfg.CONF.register_opts(shoal_opts, group=configuration.SHARED_CONF_GROUP)


class BlockdError(exception.VolumeBackendAPIException):
    """blockd answered with an error (``status`` set) or could not be reached (``status`` 0)."""

    def __init__(self, status: int, message: str):
        super().__init__(data=message)
        self.status = status


class TokenSource:
    """The X-Auth-Token for blockd: a static one, or a Keystone token for a service user.

    The Keystone token is fetched on first use, reused until ``TOKEN_MARGIN_S`` before its
    expiry, and dropped when blockd answers 401 (revoked), so the next call gets a new one.
    """

    def __init__(self, conf, session: requests.Session, verify: bool | str, timeout_s: float):
        self._conf = conf
        self._session = session
        self._verify = verify
        self._timeout_s = timeout_s
        self._lock = threading.Lock()
        self._token: str | None = None
        self._renew_at = 0.0

    @property
    def is_static(self) -> bool:
        return bool(self._conf.shoal_blockd_token)

    def get(self) -> str:
        if self.is_static:
            return self._conf.shoal_blockd_token
        with self._lock:
            if self._token is None or time.monotonic() >= self._renew_at:
                self._token, lifetime_s = self._issue()
                self._renew_at = time.monotonic() + max(lifetime_s - TOKEN_MARGIN_S, 0.0)
            return self._token

    def invalidate(self) -> None:
        with self._lock:
            self._token = None

    def _issue(self) -> tuple[str, float]:
        c = self._conf
        if not (c.shoal_auth_url and c.shoal_username and c.shoal_password):
            raise exception.InvalidConfigurationValue(
                option="shoal_blockd_token / shoal_auth_url+shoal_username+shoal_password",
                value="(none set)",
            )
        body = {
            "auth": {
                "identity": {
                    "methods": ["password"],
                    "password": {
                        "user": {
                            "name": c.shoal_username,
                            "domain": {"name": c.shoal_user_domain_name},
                            "password": c.shoal_password,
                        }
                    },
                },
                "scope": {
                    "project": {
                        "name": c.shoal_project_name,
                        "domain": {"name": c.shoal_project_domain_name},
                    }
                },
            }
        }
        url = c.shoal_auth_url.rstrip("/") + "/auth/tokens?nocatalog"
        try:
            response = self._session.post(
                url, json=body, timeout=self._timeout_s, verify=self._verify
            )
        except requests.RequestException as exc:
            raise BlockdError(0, f"Keystone at {c.shoal_auth_url} unreachable: {exc}") from None
        if response.status_code != 201 or "X-Subject-Token" not in response.headers:
            raise BlockdError(
                response.status_code,
                f"Keystone refused a token for {c.shoal_username!r}: {response.status_code}",
            )
        return response.headers["X-Subject-Token"], _lifetime_s(response.json())


def _lifetime_s(token_body: dict) -> float:
    from oslo_utils import timeutils  # Cinder dependency; parses Keystone's ISO 8601 form

    try:
        expires = timeutils.parse_isotime(token_body["token"]["expires_at"])
    except (KeyError, TypeError, ValueError):
        return DEFAULT_TOKEN_LIFETIME_S
    return max(timeutils.delta_seconds(timeutils.utcnow(with_timezone=True), expires), 0.0)


class BlockdHTTPClient:
    """blockd's JSON API: ``call(method, path, body)`` → (status, JSON body or None).

    Raises :class:`BlockdError` when blockd cannot be reached; HTTP errors are returned to the
    caller, which knows what a 404 or 409 means for its operation.
    """

    def __init__(self, conf):
        self.base_url = conf.shoal_blockd_url.rstrip("/")
        self.timeout_s = conf.shoal_http_timeout_s
        self.session = requests.Session()
        verify: bool | str = conf.shoal_verify_tls
        if verify and conf.shoal_ca_file:
            verify = conf.shoal_ca_file
        self.verify = verify
        self.tokens = TokenSource(conf, self.session, verify, self.timeout_s)

    def call(self, method: str, path: str, body: dict | None = None) -> tuple[int, Any]:
        for attempt in range(1, AUTH_ATTEMPTS + 1):
            headers = {"X-Auth-Token": self.tokens.get()}
            try:
                response = self.session.request(
                    method,
                    self.base_url + path,
                    json=body,
                    headers=headers,
                    timeout=self.timeout_s,
                    verify=self.verify,
                )
            except requests.RequestException as exc:
                raise BlockdError(0, f"blockd at {self.base_url} unreachable: {exc}") from None
            if response.status_code == 401 and attempt == 1 and not self.tokens.is_static:
                self.tokens.invalidate()  # revoked or expired early: one retry with a new token
                continue
            if response.status_code == 503 and attempt < AUTH_ATTEMPTS:
                # blockd could not reach Keystone to validate the token; the request was not
                # carried out (auth comes first), so asking again is safe
                time.sleep(AUTH_RETRY_S * attempt)
                continue
            try:
                data = response.json() if response.content else None
            except ValueError:
                data = {"error": {"message": response.text[:500]}}
            return response.status_code, data
        raise AssertionError("unreachable")

    def ok(self, method: str, path: str, body: dict | None = None, expect=(200, 201, 204)) -> Any:
        status, data = self.call(method, path, body)
        if status not in expect:
            raise BlockdError(status, f"{method} {path}: {status} {_message(data)}")
        return data


def _message(data: Any) -> str:
    if isinstance(data, dict) and isinstance(data.get("error"), dict):
        return str(data["error"].get("message", ""))
    return str(data)[:500]


def _gib(size_bytes: int) -> int:
    return math.ceil(size_bytes / GiB)


@interface.volumedriver
class ShoalISCSIDriver(driver.ISCSIDriver):
    """Volumes, snapshots and iSCSI exports served by a Shoal blockd node."""

    VERSION = "1.0.0"
    CI_WIKI_NAME = "Shoal_CI"  # Cinder asks every driver for one; Shoal's CI is its own

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.configuration.append_config_values(shoal_opts)
        self.client: BlockdHTTPClient | None = None

    @staticmethod
    def get_driver_options():
        return shoal_opts

    # --- setup ----------------------------------------------------------------------------
    def do_setup(self, context):
        self.client = BlockdHTTPClient(self.configuration)

    def check_for_setup_error(self):
        self._blockd.ok("GET", "/v1/stats")  # reachable, and our token is accepted

    @property
    def _blockd(self) -> BlockdHTTPClient:
        if self.client is None:
            self.client = BlockdHTTPClient(self.configuration)
        return self.client

    @staticmethod
    def _volume_id(volume) -> str:
        return volume.provider_id or volume.id

    @staticmethod
    def _snapshot_id(snapshot) -> str:
        return snapshot.provider_id or snapshot.id

    # --- stats ----------------------------------------------------------------------------
    def _update_volume_stats(self):
        stats = self._blockd.ok("GET", "/v1/stats")
        name = (
            self.configuration.safe_get("volume_backend_name")
            or self.configuration.shoal_volume_backend_name
        )
        self._stats = {
            "volume_backend_name": name,
            "vendor_name": "Shoal",
            "driver_version": self.VERSION,
            "storage_protocol": constants.ISCSI,
            "pools": [
                {
                    "pool_name": name,
                    "total_capacity_gb": stats["total_capacity_gb"],
                    "free_capacity_gb": stats["free_capacity_gb"],
                    "provisioned_capacity_gb": stats["provisioned_capacity_gb"],
                    "total_volumes": stats["total_volumes"],
                    "reserved_percentage": self.configuration.safe_get("reserved_percentage") or 0,
                    "thin_provisioning_support": stats["thin_provisioning_support"],
                    "thick_provisioning_support": stats["thick_provisioning_support"],
                    "max_over_subscription_ratio": stats["max_over_subscription_ratio"],
                    "online_extend_support": stats["online_extend_support"],
                    "QoS_support": False,
                    "multiattach": True,
                    "revert_to_snapshot_support": True,
                }
            ],
        }

    # --- volumes --------------------------------------------------------------------------
    def _create(self, volume, **source) -> dict:
        body = {"id": volume.id, "size_gib": volume.size, **source}
        self._blockd.ok("POST", "/v1/volumes", body, expect=(201,))
        return {"provider_id": volume.id}

    def create_volume(self, volume):
        return self._create(volume)

    def create_volume_from_snapshot(self, volume, snapshot):
        return self._create(volume, snapshot_id=self._snapshot_id(snapshot))

    def create_cloned_volume(self, volume, src_vref):
        return self._create(volume, source_volume_id=self._volume_id(src_vref))

    def extend_volume(self, volume, new_size):
        path = f"/v1/volumes/{self._volume_id(volume)}/extend"
        self._blockd.ok("POST", path, {"size_gib": new_size})

    def delete_volume(self, volume):
        status, data = self._blockd.call("DELETE", f"/v1/volumes/{self._volume_id(volume)}")
        if status == 409:
            raise exception.VolumeIsBusy(
                message=f"volume {volume.name} is busy in blockd: {_message(data)}"
            )
        if status not in (204, 404):  # 404: already gone, which is what a delete wants
            raise BlockdError(status, f"delete {volume.name}: {status} {_message(data)}")

    def revert_to_snapshot(self, context, volume, snapshot):
        path = f"/v1/volumes/{self._volume_id(volume)}/revert"
        self._blockd.ok("POST", path, {"snapshot_id": self._snapshot_id(snapshot)})

    # --- images ---------------------------------------------------------------------------
    def copy_image_to_volume(self, context, volume, image_service, image_id, disable_sparse=False):
        """blockd downloads the image from Glance into the volume itself (a task), so the
        cinder-volume host never attaches the volume (Cinder's default needs an initiator)."""
        from cinder.image import glance  # only here: importing it registers Glance's options

        meta = image_service.show(context, image_id)
        disk_format = meta.get("disk_format")
        if disk_format not in RAW_FORMATS + CONVERTED_FORMATS:
            raise exception.ImageUnacceptable(
                image_id=image_id,
                reason=f"disk_format {disk_format!r}: blockd imports raw and "
                f"{', '.join(CONVERTED_FORMATS)} images",
            )
        if meta.get("container_format") not in CONTAINER_FORMATS:
            raise exception.ImageUnacceptable(
                image_id=image_id,
                reason=f"container_format {meta.get('container_format')!r}: only bare",
            )
        virtual_size = meta.get("virtual_size")  # Glance's, when known: refuse before fetching
        if virtual_size and virtual_size > volume.size * GiB:
            raise exception.ImageUnacceptable(
                image_id=image_id,
                reason=f"the image's virtual size ({virtual_size} bytes) is larger than the "
                f"volume ({volume.size} GiB)",
            )
        netloc, use_ssl = next(iter(glance.get_api_servers(context)))
        url = f"{'https' if use_ssl else 'http'}://{netloc}/v2/images/{image_id}/file"
        headers = {"X-Auth-Token": context.auth_token} if context.auth_token else {}
        volume_id = self._volume_id(volume)
        # blockd writes an image only into a volume it creates: the empty one made for this
        # image (status "downloading", never exported) is replaced by one made from the image.
        self._blockd.ok("DELETE", f"/v1/volumes/{volume_id}", expect=(204, 404))
        image = {"url": url, "headers": headers, "disk_format": disk_format or "raw"}
        body = {"id": volume_id, "size_gib": volume.size, "image": image}
        task = self._blockd.ok("POST", "/v1/volumes", body, expect=(202,))["task"]
        self._wait_task(task, exception.ImageCopyFailure, image_id=image_id)

    def copy_volume_to_image(self, context, volume, image_service, image_meta):
        """blockd streams the volume to Glance itself (a task): no attach on this host."""
        from cinder.image import glance

        disk_format = image_meta.get("disk_format")
        if disk_format not in RAW_FORMATS:
            raise exception.ImageUnacceptable(
                image_id=image_meta["id"],
                reason=f"disk_format {disk_format!r}: blockd uploads raw images only",
            )
        netloc, use_ssl = next(iter(glance.get_api_servers(context)))
        url = f"{'https' if use_ssl else 'http'}://{netloc}/v2/images/{image_meta['id']}/file"
        headers = {"X-Auth-Token": context.auth_token} if context.auth_token else {}
        path = f"/v1/volumes/{self._volume_id(volume)}/upload"
        task = self._blockd.ok("POST", path, {"url": url, "headers": headers}, expect=(202,))
        self._wait_task(task["task"], exception.ImageCopyFailure)

    def _wait_task(self, task: dict, error, image_id: str | None = None) -> None:
        """Poll until the task ends; an image blockd refused (400: too big for the volume, a
        backing file, a format mismatch) is ImageUnacceptable, as Cinder's LVM driver says."""
        deadline = time.monotonic() + self.configuration.shoal_image_timeout_s
        while task["state"] == "running":
            if time.monotonic() > deadline:
                raise error(reason=f"blockd task {task['id']} timed out")
            time.sleep(TASK_POLL_S)
            task = self._blockd.ok("GET", f"/v1/tasks/{task['id']}")["task"]
        if task["state"] == "done":
            return
        if image_id is not None and task.get("error_status") == 400:
            raise exception.ImageUnacceptable(image_id=image_id, reason=f"blockd: {task['error']}")
        raise error(reason=f"blockd: {task['error']}")

    # --- snapshots ------------------------------------------------------------------------
    def create_snapshot(self, snapshot):
        body = {"id": snapshot.id, "volume_id": self._volume_id(snapshot.volume)}
        self._blockd.ok("POST", "/v1/snapshots", body, expect=(201,))
        return {"provider_id": snapshot.id}

    def delete_snapshot(self, snapshot):
        status, data = self._blockd.call("DELETE", f"/v1/snapshots/{self._snapshot_id(snapshot)}")
        if status == 409:
            raise exception.SnapshotIsBusy(snapshot_name=snapshot.name)
        if status not in (204, 404):
            raise BlockdError(status, f"delete {snapshot.name}: {status} {_message(data)}")

    # --- manage / unmanage ----------------------------------------------------------------
    def _existing(self, existing_ref: dict) -> dict:
        """The blockd volume named by ``{"source-id": uuid}`` or ``{"source-name": "volume-…"}``."""
        ref = existing_ref.get("source-id") or existing_ref.get("source-name") or ""
        blockd_id = ref.removeprefix("volume-")
        status, data = self._blockd.call("GET", f"/v1/volumes/{blockd_id}")
        if status != 200:
            raise exception.ManageExistingInvalidReference(
                existing_ref=existing_ref, reason=f"blockd: {status} {_message(data)}"
            )
        return data["volume"]

    def manage_existing_get_size(self, volume, existing_ref):
        return _gib(self._existing(existing_ref)["size_bytes"])

    def manage_existing(self, volume, existing_ref):
        return {"provider_id": self._existing(existing_ref)["id"]}

    def unmanage(self, volume):
        LOG.info("volume %s left in blockd as %s", volume.id, self._volume_id(volume))

    # --- exports --------------------------------------------------------------------------
    def _export(self, volume, initiator: str) -> dict:
        path = f"/v1/volumes/{self._volume_id(volume)}/exports/{initiator}"
        return self._blockd.ok("PUT", path)["export"]

    def _exported_initiators(self, volume) -> list[str]:
        path = f"/v1/volumes/{self._volume_id(volume)}/exports"
        status, data = self._blockd.call("GET", path)
        if status == 404:
            return []
        if status != 200:
            raise BlockdError(status, f"GET {path}: {status} {_message(data)}")
        return data["initiators"]

    def _unexport(self, volume, initiator: str) -> None:
        path = f"/v1/volumes/{self._volume_id(volume)}/exports/{initiator}"
        self._blockd.ok("DELETE", path, expect=(204, 404))

    def create_export(self, context, volume, connector):
        export = self._export(volume, connector["initiator"])
        portals = ";".join(export["target_portals"])
        location = f"{portals},1 {export['target_iqn']} {export['target_lun']}"
        auth = f"CHAP {export['auth_username']} {export['auth_password']}"
        return {"provider_location": location, "provider_auth": auth}

    def ensure_export(self, context, volume):
        """blockd re-creates its exports itself (target config + reconcile); check it is there."""
        self._blockd.ok("GET", f"/v1/volumes/{self._volume_id(volume)}")

    def initialize_connection(self, volume, connector):
        export = self._export(volume, connector["initiator"])  # idempotent: same pair, same IQN
        data = {
            "target_discovered": False,
            "target_iqn": export["target_iqn"],
            "target_portal": export["target_portal"],
            "target_lun": export["target_lun"],
            "volume_id": volume.id,
            "auth_method": export["auth_method"],
            "auth_username": export["auth_username"],
            "auth_password": export["auth_password"],
            "encrypted": bool(volume.encryption_key_id),
            "discard": True,
        }
        portals = export["target_portals"]
        if connector.get("multipath") or len(portals) > 1:
            data["target_portals"] = list(portals)
            data["target_iqns"] = [export["target_iqn"]] * len(portals)
            data["target_luns"] = [export["target_lun"]] * len(portals)
        return {"driver_volume_type": "iscsi", "data": data}

    @staticmethod
    def _attached_initiators(volume) -> list[str]:
        """Initiators of the volume's attachments that are attached (one per attachment)."""
        initiators = []
        for attachment in volume.volume_attachment or []:
            connector = attachment.connector or {}
            if attachment.attach_status == "attached" and connector.get("initiator"):
                initiators.append(connector["initiator"])
        return initiators

    def terminate_connection(self, volume, connector, **kwargs):
        """Unexport this initiator unless another attachment of it remains; True while any
        other initiator still needs the export (Cinder then skips remove_export)."""
        initiator = (connector or {}).get("initiator")
        if not initiator:  # a force detach without a connector: remove_export cleans up
            return False
        attached = self._attached_initiators(volume)
        if attached.count(initiator) > 1:  # several attachments of one host share its login
            return True
        self._unexport(volume, initiator)
        return bool(self._exported_initiators(volume))

    def remove_export(self, context, volume):
        needed = set(self._attached_initiators(volume))
        for initiator in self._exported_initiators(volume):
            if initiator not in needed:
                self._unexport(volume, initiator)

    def validate_connector(self, connector):
        if not connector or not connector.get("initiator"):
            raise exception.InvalidConnectorException(missing="initiator")
