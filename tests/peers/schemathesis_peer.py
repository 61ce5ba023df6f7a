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


# Serializers for media types schemathesis does not know (SETs).
HOOKS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "schemathesis_hooks.py")


def command(openapi, max_examples, listener, url):
    cli = os.path.join(os.path.dirname(sys.executable), "schemathesis")
    return [
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


def main():
    openapi, max_examples = sys.argv[1], int(sys.argv[2])
    listeners = [pair.split("=", 1) for pair in sys.argv[3:]]
    # schemathesis keeps a cache of failures in its working directory: a scratch one. The
    # listeners are tested at once.
    with tempfile.TemporaryDirectory() as scratch:
        runs = [
            (
                listener,
                url,
                subprocess.Popen(
                    command(openapi, max_examples, listener, url),
                    cwd=scratch,
                    env=dict(os.environ, SCHEMATHESIS_HOOKS=HOOKS),
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    text=True,
                ),
            )
            for listener, url in listeners
        ]
        failed = False
        for listener, url, process in runs:
            report, _ = process.communicate(timeout=300)
            # The summary names how many operations and cases ran: the test reads it.
            print(f"== {listener} {url}: exit {process.returncode}")
            print(report)
            if process.returncode != 0:
                failed = True
                print(f"== {listener}: schemathesis failed (exit {process.returncode})", file=sys.stderr)
                print(report, file=sys.stderr)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
