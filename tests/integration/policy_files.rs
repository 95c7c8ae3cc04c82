//! Policy files.
use std::path::Path;
use ecs_reconciler::policy::*;

#[test]
fn explore() {
    let cases = [
"apiVersion: ecs-reconciler/v1
kind: RemediationPolicy
metadata:
  name: web
spec:
  target:
    clusters: [prod-web]
    bogus: 1
  stuck:
    PENDING: 10m
",
"# leading comment
---
apiVersion: ecs-reconciler/v2
kind: RemediationPolicy
metadata:
  name: Web_x
spec:
  target:
    clusters: []
    services: ['[abc']
  stuck:
    PROVISONING: 10m
    PENDING: 10
    RUNNING: 0s
    unhealthy: -5m
  remediate:
    nudgeCapacity: {step: 0, maxDesired: 20, cooldown: 5m}
  guardrails:
    maxInFlightPerService: 125%
    pauseWhenStuckAbove: 50
---
# empty
---
apiVersion: ecs-reconciler/v1
kind: RemediationPolicy
metadata:
  name: web
spec:
  target:
    services: [a]
  stuck:
    PENDING: 10m
---
apiVersion: ecs-reconciler/v1
kind: RemediationPolicy
metadata:
  name: web
spec:
  target: {clusters: [a]}
  stuck:
    PENDING: 10m
  guardrails:
    maxActionsPerHour: -1
---
apiVersion: ecs-reconciler/v1
kind: RemediationPolicy
metadata:
  name: web2
spec:
  target: {clusters: [a]}
  stuck:
    PENDING: [10m
---
apiVersion: ecs-reconciler/v1
kind: RemediationPolicy
metadata: {name: ok}
spec:
  mode: audits
  target: {clusters: [a]}
  stuck: {}
",
"",
"# just comment\n",
"- a\n- b\n",
    ];
    for c in cases {
        match parse_str(Path::new("p/web.yaml"), c) {
            Ok(p) => println!("OK {:?}", p.iter().map(|p| (&p.name, &p.origin)).collect::<Vec<_>>()),
            Err(e) => println!("{e}"),
        }
    }
    println!("{}", serde_json::to_string_pretty(&json_schema()).unwrap());
    panic!();
}
