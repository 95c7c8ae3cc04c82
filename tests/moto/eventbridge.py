"""Publishes EventBridge events through rules made from deploy/events/patterns.json.

Used by tests/integration/events_sqs.rs, run with $MOTO_PYTHON (boto3 comes with moto). Reads
one JSON object on standard input:

    {"endpoint": "http://127.0.0.1:PORT", "accessKey": "MOTOACCT...", "region": "us-east-1",
     "queueArn": "arn:aws:sqs:...", "patterns": "/path/to/patterns.json",
     "events": [{"source": ..., "detail-type": ..., "detail": {...}, "resources": [...]}]}

creates one rule per pattern (named `ecs-reconciler-KEY`, as deploy/ names them) whose target
is the queue, sends the events with PutEvents (10 an entry list, the API's limit), and prints
{"rules": [...], "failed": N}. The events are the envelopes of tests/fixtures/events/: their
`source`, `detail-type`, `detail` and `resources` become PutEvents' entry; EventBridge (here,
moto) writes the envelope around them again, as it does for AWS's own events.
"""

import json
import sys

import boto3


def client(spec: dict):
    return boto3.client(
        "events",
        endpoint_url=spec["endpoint"],
        region_name=spec["region"],
        aws_access_key_id=spec["accessKey"],
        aws_secret_access_key="moto-secret",
    )


def create_rules(events, spec: dict) -> list[str]:
    with open(spec["patterns"]) as f:
        patterns = json.load(f)
    names = []
    for key, pattern in patterns.items():
        if key.startswith("_"):
            continue
        name = f"ecs-reconciler-{key}"
        events.put_rule(Name=name, EventPattern=json.dumps(pattern), State="ENABLED")
        events.put_targets(Rule=name, Targets=[{"Id": "queue", "Arn": spec["queueArn"]}])
        names.append(name)
    return names


def entry(event: dict) -> dict:
    return {
        "Source": event["source"],
        "DetailType": event["detail-type"],
        "Detail": json.dumps(event["detail"]),
        "Resources": event.get("resources", []),
    }


def main() -> None:
    spec = json.load(sys.stdin)
    events = client(spec)
    rules = create_rules(events, spec)
    failed = 0
    entries = [entry(e) for e in spec["events"]]
    for start in range(0, len(entries), 10):
        answer = events.put_events(Entries=entries[start : start + 10])
        failed += answer.get("FailedEntryCount", 0)
    print(json.dumps({"rules": rules, "failed": failed}))


if __name__ == "__main__":
    main()
