"""Level 3 (``make test-stack``, not in the default suite): Keystone → cinder-api → RabbitMQ →
cinder-scheduler → cinder-volume → ShoalISCSIDriver → blockd → tgt → a real iSCSI initiator.

Goal: the REST calls Nova and the CLI make work end to end on Shoal's block node. Method:
:class:`tests.cinder.stack.CinderStack` (real services from the Cinder venv, real Keystone from
tests/support/keystone.py, RabbitMQ from Debian), a demo-project user's token for the API, the
svc user's token as ``X-Service-Token`` for the attachment delete (what Nova sends), and the
attachment's ``connection_info`` used as is by QEMU's libiscsi initiator.
Runs only with ``SHOAL_CINDER_STACK=1`` (``make test-stack`` sets it and installs RabbitMQ).
"""

from __future__ import annotations

import os
import subprocess
import time
import uuid

import pytest
import requests

from shoal.units import GiB, MiB
from tests.block.support import DEV_TOKEN
from tests.cinder.stack import CinderAPI, CinderStack, rabbitmq_server_path
from tests.cinder.support import connector
from tests.support.keystone import keystone_fixture

pytestmark = [
    pytest.mark.root,
    pytest.mark.slow,
    pytest.mark.skipif(
        os.environ.get("SHOAL_CINDER_STACK") != "1", reason="level 3: run with make test-stack"
    ),
]

keystone = keystone_fixture()


@pytest.fixture(scope="module")
def stack(node, cinder_venv, keystone, tmp_path_factory):
    if rabbitmq_server_path() is None:
        pytest.fail("rabbitmq-server is not installed (make test-stack installs it)")
    base = tmp_path_factory.mktemp("cinder-stack")
    stack = CinderStack(cinder_venv, base, keystone, node.blockd.url, DEV_TOKEN).start()
    try:
        yield stack
    finally:
        stack.stop()


def test_rest_api_end_to_end_with_data_over_iscsi(stack, keystone, node):
    token, body = keystone.issue_token("demo")
    api = CinderAPI(stack.url, token, body["token"]["project"]["id"])
    unauthenticated = requests.get(api.base + "/volumes", timeout=30)
    assert unauthenticated.status_code == 401

    volume = api.call("POST", "/volumes", {"volume": {"size": 1, "name": "v1"}})["volume"]
    volume = api.wait("volumes", volume["id"])
    assert volume["volume_type"] == "__DEFAULT__"
    snapshot = api.call("POST", "/snapshots", {"snapshot": {"volume_id": volume["id"]}})
    snapshot = api.wait("snapshots", snapshot["snapshot"]["id"])
    from_snapshot = api.call(
        "POST", "/volumes", {"volume": {"size": 2, "snapshot_id": snapshot["id"]}}
    )
    clone = api.call("POST", "/volumes", {"volume": {"size": 1, "source_volid": volume["id"]}})
    from_snapshot = api.wait("volumes", from_snapshot["volume"]["id"])
    clone = api.wait("volumes", clone["volume"]["id"])
    api.call("POST", f"/volumes/{volume['id']}/action", {"os-extend": {"new_size": 2}})
    deadline = time.monotonic() + 120
    while api.call("GET", f"/volumes/{volume['id']}")["volume"]["size"] != 2:
        assert time.monotonic() < deadline, "extend never finished"
        time.sleep(0.25)
    assert api.wait("volumes", volume["id"])["size"] == 2

    new = {"volume_uuid": volume["id"], "instance_uuid": str(uuid.uuid4())}
    body = {"attachment": {**new, "connector": connector()}}
    attachment = api.call("POST", "/attachments", body)["attachment"]
    info = attachment["connection_info"]
    assert info["driver_volume_type"] == "iscsi" and info["auth_method"] == "CHAP"
    assert info["target_portal"] == node.tgtd.portal
    data = os.urandom(MiB)
    node.initiator.write(info, data)
    assert node.initiator.read(info, MiB) == data
    assert node.initiator.capacity_bytes(info) == 2 * GiB
    api.call("POST", f"/attachments/{attachment['id']}/action", {"os-complete": None})
    assert len(api.wait("volumes", volume["id"], "in-use")["attachments"]) == 1

    service_token, _ = keystone.issue_token("svc")
    api.call(
        "DELETE", f"/attachments/{attachment['id']}", headers={"X-Service-Token": service_token}
    )
    api.wait("volumes", volume["id"])
    with pytest.raises(subprocess.CalledProcessError):
        node.initiator.qemu_io(info, "read -q 0 4k")

    for doomed in (clone, from_snapshot):
        api.call("DELETE", f"/volumes/{doomed['id']}")
        api.wait("volumes", doomed["id"], "gone")
    api.call("DELETE", f"/snapshots/{snapshot['id']}")
    api.wait("snapshots", snapshot["id"], "gone")
    api.call("DELETE", f"/volumes/{volume['id']}")
    api.wait("volumes", volume["id"], "gone")
    for gone in (volume, clone, from_snapshot):
        assert node.api.call("GET", f"/v1/volumes/{gone['id']}")[0] == 404
