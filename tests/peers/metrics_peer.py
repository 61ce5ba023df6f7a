"""Prometheus's own client library as the reader of Tessera's /metrics.

    metrics_peer.py FILE
        Parses FILE (an OpenMetrics text exposition) with prometheus_client's strict
        OpenMetrics parser, which refuses anything the format does not allow (a missing
        `# EOF`, a family written twice, a counter sample without `_total`), and prints
        {"FAMILY": {"type": TYPE, "samples": [[NAME, {LABEL: VALUE}, VALUE], ...]}}.
"""

import json
import sys

from prometheus_client.openmetrics.parser import text_string_to_metric_families


def main():
    with open(sys.argv[1], encoding="utf-8") as f:
        text = f.read()
    families = {}
    for family in text_string_to_metric_families(text):
        families[family.name] = {
            "type": family.type,
            "samples": [[s.name, s.labels, s.value] for s in family.samples],
        }
    print(json.dumps(families))


if __name__ == "__main__":
    main()
