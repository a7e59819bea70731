#!/usr/bin/env python3
"""Writes the small, deterministic data files of the examples (run from the repository root:
`python3 examples/make-data.py`). The files are committed; this script shows how they were
made and makes bigger ones with --scale."""

import json
import math
import random
import sys
from datetime import datetime, timedelta, timezone

SCALE = int(sys.argv[sys.argv.index("--scale") + 1]) if "--scale" in sys.argv else 1
START = datetime(2026, 11, 20, 9, 0, tzinfo=timezone.utc)
START_MS = int(START.timestamp() * 1000)


def write(path, rows):
    with open(path, "w") as f:
        for row in rows:
            f.write(row if isinstance(row, str) else json.dumps(row, separators=(",", ":")))
            f.write("\n")


def sensors(rng):
    """Three sensors, one reading every 10 s for two hours, in order. The boiler warms up in the
    second hour (a rising trend); the pump has two pressure spikes and the fan one dip (planted
    anomalies, listed in anomalies.json)."""
    rows, planted = [], []
    for i in range(720 * SCALE):
        ts = START_MS + i * 10_000
        boiler = 70.0 + rng.gauss(0, 0.4) + (max(0, i - 360) * 0.05)
        pump = 3.2 + rng.gauss(0, 0.05)
        fan = 1200 + 40 * math.sin(i / 30) + rng.gauss(0, 5)
        if i in (200, 520):
            pump += 1.5
            planted.append({"series": "pump-pressure", "ts": ts})
        if i == 430:
            fan -= 400
            planted.append({"series": "fan-rpm", "ts": ts})
        for series, value in (("boiler-temp", boiler), ("pump-pressure", pump), ("fan-rpm", fan)):
            rows.append({"ts": ts, "sensor": series, "reading": round(value, 4), "id": f"{series}-{i}"})
    write("examples/sensors/sensors.ndjson", rows)
    write("examples/sensors/anomalies.json", [json.dumps(planted)])


def clickstream(rng):
    """Eight users browsing in bursts (clicks seconds to minutes apart, bursts over half an hour
    apart), RFC 3339 times, slightly out of order; a flaky client re-sends 5 % of its clicks a
    few seconds later under the same click_id."""
    pages = ["/", "/search", "/item", "/cart", "/checkout", "/help"]
    events = []
    n = 0
    for user in range(1, 9):
        t = START + timedelta(minutes=rng.randint(0, 20))
        for _session in range(rng.randint(2, 4) * SCALE):
            for _click in range(rng.randint(3, 12)):
                n += 1
                click = {"time": t.isoformat().replace("+00:00", "Z"), "user": f"u{user}",
                         "page": rng.choice(pages), "click_id": f"c{n}"}
                arrival = t + timedelta(seconds=rng.uniform(0, 8))
                events.append((arrival, click))
                if rng.random() < 0.05:
                    events.append((arrival + timedelta(seconds=rng.uniform(2, 20)), click))
                t += timedelta(seconds=rng.randint(5, 240))
            t += timedelta(minutes=rng.randint(31, 90))
    events.sort(key=lambda e: e[0])
    write("examples/clickstream/clicks.ndjson", [c for _, c in events])


def orders_payments(rng):
    """Sixty orders over two hours; most are paid within 12 minutes, some 30 or more minutes
    later (outside the join's 15 minutes), some never."""
    orders, payments = [], []
    for i in range(60 * SCALE):
        ts = START_MS + i * 120_000 + rng.randint(0, 60_000)
        amount = round(rng.uniform(5, 300), 2)
        orders.append({"ts": ts, "order_id": f"o{i}", "customer": f"k{rng.randint(1, 15)}", "amount": amount})
        fate = rng.random()
        if fate < 0.8:
            payments.append({"ts": ts + rng.randint(5_000, 720_000), "order_id": f"o{i}", "payment_id": f"p{i}", "amount": amount})
        elif fate < 0.9:
            payments.append({"ts": ts + rng.randint(1_800_000, 3_600_000), "order_id": f"o{i}", "payment_id": f"p{i}", "amount": amount})
    payments.sort(key=lambda p: p["ts"])
    write("examples/orders-payments/orders.ndjson", orders)
    write("examples/orders-payments/payments.ndjson", payments)


def classic(rng):
    """A shop's events with a category and an event type, one every 0.1-4 s for an hour,
    epoch seconds (fractional), slightly out of order."""
    rows = []
    t = START.timestamp()
    weights = {"books": 5, "games": 3, "music": 2}
    for _ in range(1500 * SCALE):
        t += rng.uniform(0.1, 4.0)
        rows.append({"time": round(t - rng.uniform(0, 2), 3),
                     "category": rng.choices(list(weights), list(weights.values()))[0],
                     "event_type": rng.choices(["view", "click", "purchase"], [70, 25, 5])[0]})
    write("examples/classic-counts/events.ndjson", rows)


if __name__ == "__main__":
    rng = random.Random(7)
    sensors(rng)
    clickstream(rng)
    orders_payments(rng)
    classic(rng)
