"""Schemathesis against a live broker: every operation of docs/openapi.json, with
generated requests valid and invalid, must answer without a 5xx and as the document says
(status, content type, headers, body schema).

Usage: schemathesis_peer.py OPENAPI MAX_EXAMPLES LISTENER=URL...

Each listener is tested with the operations tagged with its name. Exits non-zero, with
schemathesis' report on stderr, when a check fails.
"""

import os
import subprocess
import sys
import tempfile

# The checks of the document itself; the stateful and authentication heuristics of
# schemathesis are for other kinds of API.
CHECKS = ",".join(
    [
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_headers_conformance",
        "response_schema_conformance",
    ]
)


def run(openapi, max_examples, listener, url):
    cli = os.path.join(os.path.dirname(sys.executable), "schemathesis")
    command = [
        cli,
        "run",
        openapi,
        "--url",
        url,
        "--include-tag",
        listener,
        "--checks",
        CHECKS,
        "--max-examples",
        str(max_examples),
        "--mode",
        "all",
        "--phases",
        "examples,coverage,fuzzing",
        "--seed",
        "18",
        "--generation-deterministic",
        "--request-timeout",
        "10",
        "--no-color",
    ]
    # schemathesis keeps a cache of failures in its working directory: a scratch one.
    with tempfile.TemporaryDirectory() as scratch:
        done = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=scratch)
    return done.returncode, done.stdout + done.stderr


def main():
    openapi, max_examples = sys.argv[1], int(sys.argv[2])
    failed = False
    for pair in sys.argv[3:]:
        listener, url = pair.split("=", 1)
        code, report = run(openapi, max_examples, listener, url)
        # The summary names how many operations and cases ran: the test reads it.
        print(f"== {listener} {url}: exit {code}")
        print(report)
        if code != 0:
            failed = True
            print(f"== {listener}: schemathesis failed (exit {code})", file=sys.stderr)
            print(report, file=sys.stderr)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
