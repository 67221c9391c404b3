"""The anchor for the live benchmark: a faust app whose agents only count the records of the
input topics, as fast as faust can iterate them one by one. Prints, as JSON lines, when the first
record arrived and when the expected number had.

    python bench/bare_faust.py BROKER EXPECTED WEB_PORT TOPIC...
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

import faust


def main() -> None:
    broker, expected, web_port, *topics = sys.argv[1:]
    total = int(expected)
    app = faust.App(
        f"bare-faust-{os.getpid()}",
        broker=f"kafka://{broker}",
        web_port=int(web_port),
        web_host="127.0.0.1",
        broker_session_timeout=6,
        topic_partitions=8,
        consumer_auto_offset_reset="earliest",
    )
    seen = {"count": 0}

    async def count(stream: Any) -> None:
        async for _ in stream.events():
            seen["count"] += 1
            if seen["count"] == 1:
                print(json.dumps({"first": time.time()}), flush=True)
            if seen["count"] == total:
                print(json.dumps({"last": time.time(), "count": total}), flush=True)

    for number, name in enumerate(topics):
        topic = app.topic(name, value_serializer="raw", key_serializer="raw")
        app.agent(topic, name=f"count-{number}")(count)
    faust.Worker(app, loglevel="warning", quiet=True).execute_from_commandline()


if __name__ == "__main__":
    main()
