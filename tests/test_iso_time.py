"""``iso()`` (every time this project writes): its fast path for in-order feed times gives exactly
what ``datetime.isoformat`` gives, at every rounding edge."""

from __future__ import annotations

import random
from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from polylog_console.core.model.events import iso


def reference(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@given(st.floats(min_value=0.0, max_value=253402300798.0, allow_nan=False))
def test_iso_equals_isoformat(ts):
    assert iso(ts) == reference(ts)


def test_rounding_edges_and_in_order_times():
    edges = [0.0, 1.9999996, 1.0000005, 1762710200.0, 1762710200.9995, 1762710200.99949999, 253402300798.9999999]
    edges += [k / 1000 + d for k in range(3000) for d in (0.0, 0.0005, -0.0000004, 0.0000005) if k / 1000 + d >= 0]
    random.seed(7)
    edges += sorted(random.uniform(1.7e9, 1.8e9) for _ in range(5000))
    for ts in edges:
        assert iso(ts) == reference(ts), ts


def test_out_of_range_and_ints_still_work():
    assert iso(0) == "1970-01-01T00:00:00.000Z"
    assert iso(1e300) == "9999-12-31T23:59:59.999Z"
    assert iso(float("nan")) == "0001-01-01T00:00:00.000Z"
    assert iso(-1.5) == reference(-1.5)
