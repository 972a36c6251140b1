"""Cinder's real VolumeManager around ShoalISCSIDriver, driven one request at a time (level 2).

Runs with the *Cinder venv's* python (never the project's): ``python cinder_host.py CONF BACKEND``.
It reads one JSON request per line on stdin and answers one JSON line on its original stdout;
Cinder's own log goes to the file named in the config and anything else printed goes to stderr.

What is real: Cinder 29's ``VolumeManager`` with its create taskflow, quota reservations and
attachment code, a SQLite database migrated by Cinder's alembic migrations, the driver loaded from
``volume_driver`` exactly as cinder-volume loads it, and the blockd it talks to. What is not: no
message bus (oslo.messaging's in-process ``fake://`` transport; casts to the scheduler go
nowhere), no cinder-api (requests call the manager methods the RPC server would call), privileged
helpers run in-process (the harness runs as root, like Cinder's unit tests).

Requests (``{"op": name, **args}``) → answers (``{"result": ...}`` or ``{"error": {"type",
"message"}, "result": ...}``): see :data:`OPS`. ``inject`` arms one fault of the kinds named in
:func:`op_inject` (a fault injection, named as such: the failure is made by the harness, and what
is checked is what Cinder and the driver do about it against the real blockd).
"""

import json
import os
import sys
import time
import traceback

PROTOCOL_OUT = os.fdopen(os.dup(1), "w", buffering=1)
os.dup2(2, 1)  # stray prints and warnings must not corrupt the protocol stream
sys.stdout = sys.stderr

from cinder import objects  # noqa: E402
from oslo_config import cfg  # noqa: E402
from oslo_log import log as logging  # noqa: E402

objects.register_all()
import cinder.privsep  # noqa: E402
from cinder import context, coordination, quota, rpc  # noqa: E402
from cinder.common import config as _config  # noqa: E402, F401
from cinder.compute import nova as compute_nova  # noqa: E402
from cinder.db import migration  # noqa: E402
from cinder.volume import manager as volume_manager  # noqa: E402
from cinder.volume import volume_types  # noqa: E402

CONF = cfg.CONF
RECORDED = (
    "create_volume",
    "create_volume_from_snapshot",
    "create_cloned_volume",
    "extend_volume",
    "delete_volume",
    "create_snapshot",
    "delete_snapshot",
    "create_export",
    "ensure_export",
    "remove_export",
    "initialize_connection",
    "terminate_connection",
    "revert_to_snapshot",
    "manage_existing",
    "unmanage",
)
VOLUME_FIELDS = (
    "id",
    "status",
    "size",
    "provider_id",
    "provider_location",
    "provider_auth",
    "attach_status",
)


class Host:
    def __init__(self, backend: str):
        self.backend = backend
        self.ctx = context.get_admin_context()
        self.ctx.project_id, self.ctx.user_id = "demo-project", "demo-user"
        self.calls: list[str] = []
        self.faults: dict[str, object] = {}
        self.mgr = volume_manager.VolumeManager(host=f"testhost@{backend}", service_name=backend)
        self._record(self.mgr.driver)  # before init_host: its ensure_export calls count too
        self.mgr.init_host(service_id=None)
        self.vtype = volume_types.get_default_volume_type(self.ctx)
        self.nova_events: list[tuple[str, list[str], str]] = []
        self._record_nova()

    def _record_nova(self) -> None:
        """There is no Nova here (level 2): its external-event call after an online extend is
        recorded instead of sent (a stand-in, named as such; level 3 would need a real Nova)."""

        def extend_volume(api, ctx, instance_uuids, volume_id):
            self.nova_events.append(("volume-extended", list(instance_uuids), volume_id))
            return True

        compute_nova.API.extend_volume = extend_volume

    def _record(self, driver) -> None:
        """Wrap the driver's contract methods to log each call (and fire armed faults)."""
        for name in RECORDED:
            original = getattr(driver, name)

            def wrapper(*args, _name=name, _original=original, **kwargs):
                self.calls.append(_name)
                fault = self.faults.pop(_name, None)
                result = _original(*args, **kwargs)
                if fault is not None:
                    fault(*args)
                return result

            setattr(driver, name, wrapper)

    # --- rows -------------------------------------------------------------------------------
    def volume(self, volume_id: str):
        return objects.Volume.get_by_id(self.ctx, volume_id)

    def volume_row(self, volume_id: str) -> dict:
        try:
            volume = self.volume(volume_id)
        except Exception:  # VolumeNotFound: the row is (soft-)deleted
            return {"id": volume_id, "deleted": True}
        return {f: getattr(volume, f) for f in VOLUME_FIELDS} | {"deleted": False}

    def new_volume(self, size: int, **kw):
        volume = objects.Volume(
            context=self.ctx,
            size=size,
            status="creating",
            attach_status="detached",
            host=f"testhost@{self.backend}#{self.backend}",
            project_id=self.ctx.project_id,
            user_id=self.ctx.user_id,
            availability_zone="nova",
            volume_type_id=self.vtype["id"],
            **kw,
        )
        volume.create()
        return volume


def op_create_volume(h: Host, size, snapshot_id=None, source_volid=None):
    volume = h.new_volume(size, snapshot_id=snapshot_id, source_volid=source_volid)
    spec = objects.RequestSpec(
        snapshot_id=snapshot_id, source_volid=source_volid, volume_id=volume.id
    )
    try:
        h.mgr.create_volume(h.ctx, volume, request_spec=spec)
    finally:
        h.last = h.volume_row(volume.id)
    return h.last


def op_create_snapshot(h: Host, volume_id):
    volume = h.volume(volume_id)
    snapshot = objects.Snapshot(
        context=h.ctx,
        volume_id=volume_id,
        status="creating",
        volume_size=volume.size,
        project_id=h.ctx.project_id,
        user_id=h.ctx.user_id,
        volume_type_id=h.vtype["id"],
        progress="0%",
    )
    snapshot.create()
    h.mgr.create_snapshot(h.ctx, snapshot)
    snapshot.refresh()
    return {f: getattr(snapshot, f) for f in ("id", "status", "progress", "provider_id")}


def op_extend_volume(h: Host, volume_id, new_size):
    volume = h.volume(volume_id)
    reservations = quota.QUOTAS.reserve(
        h.ctx, gigabytes=new_size - volume.size, project_id=h.ctx.project_id
    )
    online = volume.status == "in-use"
    if not online:
        volume.status = "extending"
        volume.save()
    h.mgr.extend_volume(h.ctx, volume, new_size, reservations)
    return h.volume_row(volume_id)


def op_attach(h: Host, volume_id, connector, instance_uuid):
    """Nova's attachment flow: a reserved attachment, then attachment_update with the connector."""
    volume = h.volume(volume_id)
    if volume.status == "available":
        volume.status = "reserved"
        volume.save()
    attachment = objects.VolumeAttachment(
        context=h.ctx,
        volume_id=volume_id,
        instance_uuid=instance_uuid,
        attach_status="reserved",
        attach_mode="rw",
    )
    attachment.create()
    h.last_attachment = attachment.id
    info = h.mgr.attachment_update(h.ctx, h.volume(volume_id), connector, attachment.id)
    attachment.refresh()  # then what the API's os-complete does, as Nova calls it
    attachment.update({"attach_status": "attached"})
    attachment.save()
    volume = h.volume(volume_id)
    volume.update({"status": "in-use", "attach_status": "attached"})
    volume.save()
    return {"attachment_id": attachment.id, "connection_info": info}


def op_detach(h: Host, volume_id, attachment_id):
    """Nova's detach: attachment_delete on the manager, then the API's bookkeeping."""
    h.mgr.attachment_delete(h.ctx, attachment_id, h.volume(volume_id))
    h.volume(volume_id).finish_detach(attachment_id)  # the API's part (db.volume_detached)
    return h.volume_row(volume_id)


def op_delete_volume(h: Host, volume_id):
    h.mgr.delete_volume(h.ctx, h.volume(volume_id))
    return h.volume_row(volume_id)


def op_delete_snapshot(h: Host, snapshot_id):
    snapshot = objects.Snapshot.get_by_id(h.ctx, snapshot_id)
    h.mgr.delete_snapshot(h.ctx, snapshot)
    try:
        snapshot.refresh()
    except Exception:
        return {"id": snapshot_id, "deleted": True}
    return {"id": snapshot_id, "deleted": False, "status": snapshot.status}


def op_revert(h: Host, volume_id, snapshot_id):
    volume = h.volume(volume_id)
    snapshot = objects.Snapshot.get_by_id(h.ctx, snapshot_id)
    volume.status = "reverting"
    volume.save()
    snapshot.status = "restoring"
    snapshot.save()
    h.mgr.revert_to_snapshot(h.ctx, volume, snapshot)
    return h.volume_row(volume_id)


def op_manage(h: Host, ref):
    volume = h.new_volume(0)
    volume.status = "managing"
    volume.save()
    h.mgr.manage_existing(h.ctx, volume, ref)
    return h.volume_row(volume.id)


def op_unmanage(h: Host, volume_id):
    h.mgr.delete_volume(h.ctx, h.volume(volume_id), unmanage_only=True)
    return h.volume_row(volume_id)


def op_swift_backup(h: Host, volume_id, volume_path, target_id, target_path, swift):
    """Cinder's own Swift backup driver (a real swiftclient user) against Shoal's proxy: back
    ``volume_id`` up, then restore it into ``target_id``. The volumes' files are opened directly
    (the backup manager would attach them with os-brick, which needs a kernel initiator)."""
    from cinder.backup.drivers import swift as swift_backup  # registers its options

    for name, value in swift.items():
        CONF.set_override(f"backup_swift_{name}", value)

    volume = h.volume(volume_id)
    backup = objects.Backup(
        context=h.ctx,
        volume_id=volume_id,
        status="creating",
        size=volume.size,
        project_id=h.ctx.project_id,
        user_id=h.ctx.user_id,
        display_name="shoal-backup",
        availability_zone="nova",
        host="testhost",
        service="cinder.backup.drivers.swift.SwiftBackupDriver",
    )
    backup.create()
    driver = swift_backup.SwiftBackupDriver(h.ctx)
    with open(volume_path, "rb") as source:
        driver.backup(backup, source)
    backup.refresh()
    backup.status = "restoring"  # what the backup manager sets; the driver checks it per chunk
    backup.save()
    target_volume = h.volume(target_id)
    target_volume.status = "restoring-backup"
    target_volume.save()
    with open(target_path, "r+b") as target:
        driver.restore(backup, target_id, target, True)
    target_volume.status = "available"
    target_volume.save()
    return {"backup_id": backup.id, "container": backup.container, "objects": backup.object_count}


class MiniImageService:
    """The part of Glance's image service the driver reads: ``show`` (a stand-in; the image
    bytes themselves come over HTTP from the URL the driver builds, by blockd)."""

    def __init__(self, meta: dict):
        self.meta = meta

    def show(self, ctx, image_id):
        return dict(self.meta, id=image_id)


def op_copy_image(h: Host, volume_id, image_id, glance_url, meta):
    """The driver's copy_image_to_volume as the create-from-image flow calls it."""
    from cinder.image import glance  # noqa: F401

    CONF.set_override("glance_api_servers", [glance_url])
    volume = h.volume(volume_id)
    h.mgr.driver.copy_image_to_volume(h.ctx, volume, MiniImageService(meta), image_id)
    return h.volume_row(volume_id)


def op_upload_image(h: Host, volume_id, glance_url, meta):
    """The driver's copy_volume_to_image as the upload-to-image API path calls it."""
    from cinder.image import glance  # noqa: F401

    CONF.set_override("glance_api_servers", [glance_url])
    volume = h.volume(volume_id)
    h.mgr.driver.copy_volume_to_image(h.ctx, volume, MiniImageService(meta), meta)
    return h.volume_row(volume_id)


def op_show_volume(h: Host, volume_id):
    return h.volume_row(volume_id)


def op_stats(h: Host):
    h.mgr._report_driver_status(h.ctx)
    return h.mgr.driver.get_volume_stats(refresh=False)


def op_nova_events(h: Host):
    return h.nova_events


def op_calls(h: Host):
    calls, h.calls = h.calls, []
    return calls


def op_set_blockd_url(h: Host, url):
    CONF.set_override("shoal_blockd_url", url, group=h.backend)
    h.mgr.driver.do_setup(h.ctx)
    return url


def op_inject(h: Host, kind, **args):
    """Arm one fault: ``initialize_connection_fails`` (the driver's call succeeds, then the
    harness raises, as a failing target would) or ``export_after_remove_export`` (another
    initiator is exported through blockd right after Cinder's remove_export, as a concurrent
    attach elsewhere would, so the next delete_volume meets a busy volume)."""
    if kind == "initialize_connection_fails":

        def fail(*_args):
            raise RuntimeError("injected: the target failed after the export")

        h.faults["initialize_connection"] = fail
    elif kind == "export_after_remove_export":

        def export_elsewhere(_ctx, volume):
            h.mgr.driver._export(volume, args["initiator"])

        h.faults["remove_export"] = export_elsewhere
    else:
        raise ValueError(f"unknown fault {kind!r}")
    return kind


OPS = {name[3:]: fn for name, fn in globals().items() if name.startswith("op_")}


def main() -> int:
    conf_path, backend = sys.argv[1], sys.argv[2]
    started = time.monotonic()
    logging.register_options(CONF)
    CONF(["--config-file", conf_path], project="cinder")
    logging.setup(CONF, "cinder")  # Cinder's log to log_file, as cinder-volume does
    cinder.privsep.sys_admin_pctxt.set_client_mode(False)  # no sudo here: run in-process
    migration.db_sync()
    rpc.init(CONF)
    coordination.COORDINATOR.start()
    host = Host(backend)
    ready = {
        "ready": True,
        "driver_initialized": host.mgr.driver.initialized,
        "driver_class": type(host.mgr.driver).__module__ + "." + type(host.mgr.driver).__name__,
        "start_s": round(time.monotonic() - started, 2),
    }
    PROTOCOL_OUT.write(json.dumps(ready) + "\n")
    for line in sys.stdin:
        request = json.loads(line)
        op = OPS[request.pop("op")]
        host.last = None
        try:
            answer = {"result": op(host, **request)}
        except Exception as exc:
            traceback.print_exc()
            answer = {
                "error": {"type": type(exc).__name__, "message": str(exc)},
                "result": host.last,
            }
        PROTOCOL_OUT.write(json.dumps(answer, default=str) + "\n")
    coordination.COORDINATOR.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
