"""``path=`` container listings through the proxy, with python-swiftclient against a real
``shoal aio``: the proxy passes ``path`` on and objectd lists one pseudo-directory (the exact
semantics are model-tested in tests/objectd/test_objectd_listing_properties.py)."""

from __future__ import annotations

import swiftclient

NAMES = ["photos/", "photos/a.jpg", "photos/2024/", "photos/2024/b.jpg", "photos0", "top.txt"]


def _names(listing: list[dict]) -> list[str]:
    return [item.get("name", item.get("subdir")) for item in listing]


def test_path_lists_one_pseudo_directory(swift: swiftclient.Connection, container: str):
    for name in NAMES:
        swift.put_object(container, name, b"x")
    _, listing = swift.get_container(container, path="photos")
    assert _names(listing) == ["photos/2024/", "photos/a.jpg"]
    _, listing = swift.get_container(container, path="photos/2024/")
    assert _names(listing) == ["photos/2024/b.jpg"]
    # the top level (swiftclient drops an empty path=, so it goes in the query string)
    _, listing = swift.get_container(container, query_string="path=")
    assert _names(listing) == ["photos/", "photos0", "top.txt"]
    # path overrides prefix and delimiter; marker, limit and reverse still apply
    _, listing = swift.get_container(container, path="photos", prefix="top", delimiter="-")
    assert _names(listing) == ["photos/2024/", "photos/a.jpg"]
    _, listing = swift.get_container(container, path="photos", query_string="reverse=true")
    assert _names(listing) == ["photos/a.jpg", "photos/2024/"]
    _, listing = swift.get_container(container, path="photos", marker="photos/2024/", limit=1)
    assert _names(listing) == ["photos/a.jpg"]
