"""A backend process that speaks the wire protocol by hand, and breaks it in one way on request.

    python tests/wire_fake_backend.py MODE

It answers every call as the reference does, except ``keep_top_k``, where MODE
decides what goes wrong: ``crash`` (exit with status 3 after a line on stderr),
``hang`` (never answer), ``garbage`` (a line that is not JSON), ``extra`` (the
answer, then a second copy of it), ``wrong-id`` (answer with another id),
``bad-value`` (a bare JSON float as the mask). Handshake modes: ``no-hello``
(exit at once), ``slow-hello`` (sleep instead), ``version-2``, ``unknown-op``,
``torch`` (claims the torch profile), ``nothing`` (provides no operation).
``ok`` breaks nothing.
"""

import json
import sys
import time

from conformance.backend import OPERATIONS, ReferenceBackend
from conformance.wire import PROTOCOL, VERSION, answer

MODE = sys.argv[1] if len(sys.argv) > 1 else "ok"


def send(message):
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def main():
    if MODE == "no-hello":
        print("cannot initialise the device", file=sys.stderr)
        sys.exit(1)
    if MODE == "slow-hello":
        time.sleep(60)
    ops = [] if MODE == "nothing" else list(OPERATIONS)
    version = 2 if MODE == "version-2" else VERSION
    extra = ["prune_everything"] if MODE == "unknown-op" else []
    hello = {
        "type": "hello",
        "protocol": PROTOCOL,
        "version": version,
        "backend": f"fake ({MODE})",
        "operations": ops + extra,
        "profile": "torch" if MODE == "torch" else "reference",
    }
    send(hello)
    backend = ReferenceBackend()
    for line in sys.stdin:
        request = json.loads(line)
        if request["op"] != "keep_top_k" or MODE in ("ok", "torch"):
            send(answer(backend, ops, line.encode()))
            continue
        print(f"fake backend: request {request['id']} ({MODE})", file=sys.stderr, flush=True)
        if MODE == "crash":
            sys.exit(3)
        if MODE == "hang":
            time.sleep(600)
        if MODE == "garbage":
            sys.stdout.write("computing the mask...\n")
            sys.stdout.flush()
            continue
        reply = answer(backend, ops, line.encode())
        if MODE == "wrong-id":
            reply["id"] += 1
        if MODE == "bad-value":
            reply["value"] = 0.5
        send(reply)
        if MODE == "extra":
            send(reply)


if __name__ == "__main__":
    main()
