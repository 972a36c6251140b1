"""Shared strategies for ring tests: random clusters of regions, zones, hosts and weights."""

from __future__ import annotations

from hypothesis import strategies as st

WEIGHTS = st.sampled_from([50.0, 100.0, 100.0, 100.0, 150.0, 200.0])


@st.composite
def clusters(draw, *, min_zones: int = 1, max_regions: int = 3, max_devices: int = 24):
    """A list of device dicts spread over 1-3 regions, zones and hosts, with mixed weights."""
    regions = draw(st.integers(1, max_regions))
    devs = []
    zone_ids = []
    for region in range(1, regions + 1):
        for zone in range(1, draw(st.integers(1, 4)) + 1):
            zone_ids.append((region, zone))
    while len(zone_ids) < min_zones:
        zone_ids.append((1, len(zone_ids) + 1))
    for region, zone in zone_ids:
        for host in range(draw(st.integers(1, 3))):
            for disk in range(draw(st.integers(1, 2))):
                if len(devs) >= max_devices:
                    break
                devs.append(
                    {
                        "region": region,
                        "zone": zone,
                        "ip": f"10.{region}.{zone}.{host + 1}",
                        "port": 6200,
                        "device": f"d{disk}",
                        "weight": draw(WEIGHTS),
                    }
                )
    return devs
