//! A loopback-only HTTP/1.1 stub of the ECS API (awsJson1.1) for the cost bench: canned,
//! deterministic answers in the shape of the ECS API reference, generated per request so the
//! stub holds nothing per task.
//!
//! The cluster name says what the cluster holds: `cost-N-S` has N tasks (desiredStatus
//! RUNNING), of which S are stuck on the way up (PROVISIONING or PENDING for 30 minutes, past
//! the bench policy's 10-minute limits), spread evenly. Every task belongs to one of
//! [`SERVICES`] services, is EC2/awsvpc on one of [`INSTANCES`] container instances, and
//! DescribeTasks gives about 1.5 KB of JSON for it: two containers, an ENI attachment with its
//! details, overrides, tags, attributes and timestamps.
//!
//! Served: DescribeClusters, ListServices, DescribeServices, ListTasks (100 a page, paged by
//! `nextToken`; nothing with desiredStatus STOPPED), DescribeTasks, ListContainerInstances and
//! DescribeContainerInstances. Anything else is a 400 `UnknownOperationException`.

use std::net::SocketAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

pub const ACCOUNT: &str = "123456789012";
pub const REGION: &str = "us-east-1";
/// Services the tasks are spread over.
pub const SERVICES: usize = 20;
/// Container instances the tasks are spread over.
pub const INSTANCES: usize = 40;
const PAGE: usize = 100;
const TARGET_PREFIX: &str = "AmazonEC2ContainerServiceV20141113.";

/// What a cluster named `cost-N-S` holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClusterShape {
    pub tasks: usize,
    pub stuck: usize,
}

impl ClusterShape {
    pub fn name(self) -> String {
        format!("cost-{}-{}", self.tasks, self.stuck)
    }

    /// The shape a cluster name or ARN stands for.
    pub fn parse(cluster: &str) -> Option<ClusterShape> {
        let name = cluster.rsplit('/').next()?;
        let mut parts = name.strip_prefix("cost-")?.split('-');
        let tasks = parts.next()?.parse().ok()?;
        let stuck = parts.next()?.parse().ok()?;
        Some(ClusterShape { tasks, stuck })
    }

    /// Whether task `i` is stuck: every (N/S)-th task.
    fn is_stuck(self, i: usize) -> bool {
        if self.stuck == 0 {
            return false;
        }
        let stride = (self.tasks / self.stuck).max(1);
        i.is_multiple_of(stride) && i / stride < self.stuck
    }
}

/// Binds a loopback port and serves until the process ends; returns the address.
pub async fn serve() -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(connection(stream));
        }
    });
    Ok(addr)
}

/// One keep-alive connection: request after request until the client closes it.
async fn connection(stream: TcpStream) {
    // One write per answer, sent at once: no Nagle wait against the client's delayed ACK.
    let _ = stream.set_nodelay(true);
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::new(read);
    while let Some((target, body)) = request(&mut read).await {
        let (status, answer) = answer(&target, &body);
        let body = answer.to_string();
        let message = format!(
            "HTTP/1.1 {status}\r\nContent-Type: application/x-amz-json-1.1\r\n\
             x-amzn-RequestId: 00000000-0000-4000-8000-000000000000\r\n\
             Content-Length: {}\r\n\r\n{body}",
            body.len()
        );
        if write.write_all(message.as_bytes()).await.is_err() {
            return;
        }
    }
}

/// The `X-Amz-Target` and body of the next request; `None` at the end of the connection.
async fn request<R: AsyncBufReadExt + Unpin>(read: &mut R) -> Option<(String, Vec<u8>)> {
    let mut target = String::new();
    let mut length = 0usize;
    let mut line = String::new();
    loop {
        line.clear();
        if read.read_line(&mut line).await.ok()? == 0 {
            return None;
        }
        let header = line.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            let value = value.trim();
            if name.eq_ignore_ascii_case("content-length") {
                length = value.parse().ok()?;
            } else if name.eq_ignore_ascii_case("x-amz-target") {
                target = value.to_string();
            }
        }
    }
    let mut body = vec![0; length];
    read.read_exact(&mut body).await.ok()?;
    Some((target, body))
}

fn answer(target: &str, body: &[u8]) -> (&'static str, Value) {
    let input: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let operation = target.strip_prefix(TARGET_PREFIX).unwrap_or(target);
    let cluster = input["cluster"].as_str().unwrap_or("default");
    let Some(shape) = ClusterShape::parse(cluster)
        .or_else(|| input["clusters"][0].as_str().and_then(ClusterShape::parse))
    else {
        return client_error("ClusterNotFoundException", "Cluster not found.");
    };
    let name = shape.name();
    let token = input["nextToken"].as_str().and_then(|t| t.parse().ok());
    let answer = match operation {
        "DescribeClusters" => describe_clusters(&name),
        "ListServices" => page(SERVICES, token, "serviceArns", |i| service_arn(&name, i)),
        "DescribeServices" => describe_services(&name, shape, &input["services"]),
        "ListTasks" if input["desiredStatus"] == "STOPPED" => json!({"taskArns": []}),
        "ListTasks" => page(shape.tasks, token, "taskArns", |i| task_arn(&name, i)),
        "DescribeTasks" => describe_tasks(&name, shape, &input["tasks"]),
        "ListContainerInstances" => page(INSTANCES, token, "containerInstanceArns", |i| {
            instance_arn(&name, i)
        }),
        "DescribeContainerInstances" => describe_instances(&name, &input["containerInstances"]),
        _ => return client_error("UnknownOperationException", operation),
    };
    ("200 OK", answer)
}

fn client_error(code: &str, message: &str) -> (&'static str, Value) {
    (
        "400 Bad Request",
        json!({"__type": code, "message": message}),
    )
}

/// One page of `total` ARNs from `token` (an index) on.
fn page(total: usize, token: Option<usize>, key: &str, arn: impl Fn(usize) -> String) -> Value {
    let from = token.unwrap_or(0).min(total);
    let to = (from + PAGE).min(total);
    let mut out = serde_json::Map::new();
    out.insert(key.into(), (from..to).map(arn).collect());
    if to < total {
        out.insert("nextToken".into(), to.to_string().into());
    }
    Value::Object(out)
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs() as f64)
}

fn cluster_arn(name: &str) -> String {
    format!("arn:aws:ecs:{REGION}:{ACCOUNT}:cluster/{name}")
}

fn service_arn(cluster: &str, i: usize) -> String {
    format!("arn:aws:ecs:{REGION}:{ACCOUNT}:service/{cluster}/web-{i:02}")
}

/// A task id like ECS's (32 hex digits), from the task's index.
fn task_id(i: usize) -> String {
    let mixed = (i as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    format!(
        "{mixed:016x}{:016x}",
        mixed.rotate_left(29) ^ 0xA5A5_5A5A_0F0F_F0F0
    )
}

fn task_arn(cluster: &str, i: usize) -> String {
    format!(
        "arn:aws:ecs:{REGION}:{ACCOUNT}:task/{cluster}/{}",
        task_id(i)
    )
}

fn instance_arn(cluster: &str, i: usize) -> String {
    format!(
        "arn:aws:ecs:{REGION}:{ACCOUNT}:container-instance/{cluster}/{}",
        task_id(1_000_000 + i)
    )
}

/// The index a generated ARN (task, service or container instance) was made from.
fn index_of(arn: &str, ids: impl Fn(usize) -> String, limit: usize) -> Option<usize> {
    let id = arn.rsplit('/').next()?;
    (0..limit).find(|&i| ids(i) == id)
}

fn task_index(arn: &str, shape: ClusterShape) -> Option<usize> {
    // The id's first half is (i + 1) times an odd constant: multiplying by its inverse gives
    // the index back without a search.
    let id = arn.rsplit('/').next()?;
    let mixed = u64::from_str_radix(id.get(..16)?, 16).ok()?;
    let i = mixed.wrapping_mul(INVERSE) as usize;
    (i >= 1 && i <= shape.tasks).then(|| i - 1)
}

/// The multiplicative inverse of the golden-ratio constant modulo 2^64.
const INVERSE: u64 = 0xF1DE_83E1_9937_733D;

fn describe_clusters(name: &str) -> Value {
    json!({
        "clusters": [{
            "clusterArn": cluster_arn(name),
            "clusterName": name,
            "status": "ACTIVE",
            "registeredContainerInstancesCount": INSTANCES,
            "runningTasksCount": 0,
            "pendingTasksCount": 0,
            "activeServicesCount": SERVICES,
            "capacityProviders": [],
            "defaultCapacityProviderStrategy": [],
        }],
        "failures": [],
    })
}

fn describe_services(cluster: &str, shape: ClusterShape, names: &Value) -> Value {
    let per_service = shape.tasks.div_ceil(SERVICES);
    let services: Vec<Value> = names
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .filter_map(|arn| index_of(arn, |i| format!("web-{i:02}"), SERVICES))
        .map(|i| {
            json!({
                "serviceArn": service_arn(cluster, i),
                "serviceName": format!("web-{i:02}"),
                "clusterArn": cluster_arn(cluster),
                "status": "ACTIVE",
                "desiredCount": per_service,
                "runningCount": per_service,
                "pendingCount": 0,
                "launchType": "EC2",
                "taskDefinition": task_definition(i),
                "events": [{
                    "id": task_id(2_000_000 + i),
                    "createdAt": now() - 600.0,
                    "message": format!("(service web-{i:02}) has reached a steady state."),
                }],
            })
        })
        .collect();
    json!({"services": services, "failures": []})
}

fn describe_instances(cluster: &str, arns: &Value) -> Value {
    let instances: Vec<Value> = arns
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .filter_map(|arn| index_of(arn, |i| task_id(1_000_000 + i), INSTANCES))
        .map(|i| {
            json!({
                "containerInstanceArn": instance_arn(cluster, i),
                "ec2InstanceId": format!("i-0{:016x}", i + 0xabc000),
                "status": "ACTIVE",
                "agentConnected": true,
                "registeredAt": now() - 86_400.0,
                "runningTasksCount": 0,
                "pendingTasksCount": 0,
                "versionInfo": {"agentVersion": "1.89.0", "dockerVersion": "DockerVersion: 25.0.6"},
            })
        })
        .collect();
    json!({"containerInstances": instances, "failures": []})
}

fn task_definition(service: usize) -> String {
    format!("arn:aws:ecs:{REGION}:{ACCOUNT}:task-definition/web-{service:02}:42")
}

fn describe_tasks(cluster: &str, shape: ClusterShape, arns: &Value) -> Value {
    let mut tasks = Vec::new();
    let mut failures = Vec::new();
    for arn in arns
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
    {
        match task_index(arn, shape) {
            Some(i) => tasks.push(task(cluster, shape, i)),
            None => failures.push(json!({"arn": arn, "reason": "MISSING"})),
        }
    }
    json!({"tasks": tasks, "failures": failures})
}

/// Task `i` of the cluster, as DescribeTasks with `include: [TAGS]` reports it.
pub fn task(cluster: &str, shape: ClusterShape, i: usize) -> Value {
    let id = task_id(i);
    let arn = task_arn(cluster, i);
    let service = i % SERVICES;
    let stuck = shape.is_stuck(i);
    let status = match (stuck, i % 2) {
        (false, _) => "RUNNING",
        (true, 0) => "PROVISIONING",
        (true, _) => "PENDING",
    };
    let now = now();
    let created = if stuck { now - 1800.0 } else { now - 7200.0 };
    let ip = format!("10.0.{}.{}", (i / 250) % 250, i % 250 + 2);
    let eni = format!("eni-0{:016x}", i as u64 ^ 0x5eed_0000);
    let mut attachment_details = vec![
        json!({"name": "subnetId", "value": format!("subnet-0{:016x}", service % 3 + 0x1000)}),
    ];
    if status != "PROVISIONING" {
        attachment_details.extend([
            json!({"name": "networkInterfaceId", "value": eni}),
            json!({"name": "macAddress", "value": format!("0e:{:02x}:{:02x}:3c:7a:11", i % 256, (i / 256) % 256)}),
            json!({"name": "privateDnsName", "value": format!("ip-{}.ec2.internal", ip.replace('.', "-"))}),
            json!({"name": "privateIPv4Address", "value": ip}),
        ]);
    }
    let container = |name: &str, image: &str, n: usize| {
        json!({
            "containerArn": format!("arn:aws:ecs:{REGION}:{ACCOUNT}:container/{cluster}/{id}/{}", task_id(10_000_000 + i * 2 + n)),
            "taskArn": arn,
            "name": name,
            "image": image,
            "imageDigest": format!("sha256:{}{}", task_id(n), task_id(n + 7)),
            "runtimeId": format!("{id}-{}", 1_000_000_000u64 + n as u64),
            "lastStatus": status,
            "networkBindings": [],
            "networkInterfaces": [{"attachmentId": task_id(20_000_000 + i), "privateIpv4Address": ip}],
            "healthStatus": if stuck { "UNKNOWN" } else { "HEALTHY" },
            "cpu": "128",
            "memory": "256",
        })
    };
    let mut task = json!({
        "taskArn": arn,
        "clusterArn": cluster_arn(cluster),
        "taskDefinitionArn": task_definition(service),
        "containerInstanceArn": instance_arn(cluster, i % INSTANCES),
        "group": format!("service:web-{service:02}"),
        "startedBy": format!("ecs-svc/{:019}", 1_234_567_890_123_456_789u64 + service as u64),
        "lastStatus": status,
        "desiredStatus": "RUNNING",
        "healthStatus": if stuck { "UNKNOWN" } else { "HEALTHY" },
        "launchType": "EC2",
        "availabilityZone": format!("{REGION}{}", ["a", "b", "c"][service % 3]),
        "connectivity": if stuck { "DISCONNECTED" } else { "CONNECTED" },
        "cpu": "256",
        "memory": "512",
        "version": if stuck { 1 } else { 3 },
        "createdAt": created,
        "enableExecuteCommand": false,
        "attachments": [{
            "id": task_id(20_000_000 + i),
            "type": "ElasticNetworkInterface",
            "status": if status == "PROVISIONING" { "PRECREATED" } else { "ATTACHED" },
            "details": attachment_details,
        }],
        "attributes": [{"name": "ecs.cpu-architecture", "value": "x86_64"}],
        "containers": [
            container("app", &format!("{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/web-{service:02}:1.4.2"), 0),
            container("log-router", "public.ecr.aws/aws-observability/aws-for-fluent-bit:2.32.0", 1),
        ],
        "overrides": {
            "containerOverrides": [{"name": "app"}, {"name": "log-router"}],
            "inferenceAcceleratorOverrides": [],
        },
        "tags": [
            {"key": "team", "value": "payments"},
            {"key": "env", "value": "production"},
            {"key": "cost-center", "value": "cc-4711"},
        ],
    });
    if status == "PENDING" {
        task["connectivityAt"] = json!(created + 20.0);
    }
    if !stuck {
        for (key, at) in [
            ("connectivityAt", created + 20.0),
            ("pullStartedAt", created + 25.0),
            ("pullStoppedAt", created + 40.0),
            ("startedAt", created + 45.0),
        ] {
            task[key] = json!(at);
        }
    }
    task
}
