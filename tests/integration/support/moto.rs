//! The moto harness: the AWS adapter's tests run against moto 5.2.5 (a widely used AWS
//! emulator), patched by `tests/moto/launcher.py` to behave closer to real ECS.
//!
//! One moto process serves the whole test binary, started on first use on a free loopback
//! port. Tests are isolated by account instead of by process: each [`Moto`] handle signs its
//! requests with an access key id that the launcher maps to a fresh account id, so every test
//! sees an empty account. (A process costs about a second to start; one per test would make
//! the suite several times slower on a small machine for no extra isolation.) The process ends
//! when its standard input closes, which happens when the test binary exits, even on a crash.
//!
//! Run the tests with `scripts/test.sh`, which installs moto into `.venv` and sets
//! `MOTO_PYTHON`.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};

use aws_config::{BehaviorVersion, SdkConfig};
use aws_sdk_ecs::config::{Credentials, Region, SharedCredentialsProvider};
use ecs_reconciler::cloud::aws::{AwsCloud, AwsSettings};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The Region every test uses.
pub const REGION: &str = "us-east-1";

/// A running moto server. Killed when dropped (the shared one is never dropped: it exits when
/// the test binary does, because its standard input closes).
pub struct MotoServer {
    child: Mutex<Child>,
    port: u16,
    // Held open: the launcher exits when it closes.
    _stdin: ChildStdin,
    _stdout: BufReader<ChildStdout>,
}

impl MotoServer {
    /// Starts `$MOTO_PYTHON tests/moto/launcher.py` and waits for it to listen.
    pub fn start() -> MotoServer {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let python = moto_python(root);
        let mut child = Command::new(&python)
            .arg(root.join("tests/moto/launcher.py"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start moto with {}: {e}", python.display()));
        let stdin = child.stdin.take().expect("piped stdin");
        let mut stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        let mut line = String::new();
        stdout.read_line(&mut line).expect("reading moto's port");
        let port = line
            .strip_prefix("PORT ")
            .and_then(|p| p.trim().parse().ok())
            .unwrap_or_else(|| {
                let _ = child.kill();
                panic!("moto did not announce its port (got {line:?}); see its output above")
            });
        MotoServer {
            child: Mutex::new(child),
            port,
            _stdin: stdin,
            _stdout: stdout,
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        let child = self.child.get_mut().unwrap_or_else(|p| p.into_inner());
        let _ = child.kill();
        let _ = child.wait();
    }
}

fn moto_python(root: &Path) -> PathBuf {
    if let Some(python) = std::env::var_os("MOTO_PYTHON") {
        return PathBuf::from(python);
    }
    let venv = root.join(".venv/bin/python");
    if venv.exists() {
        return venv;
    }
    panic!(
        "the AWS adapter tests need moto: run them with scripts/test.sh (it installs \
         moto[server]==5.2.5 into .venv and sets MOTO_PYTHON), or set MOTO_PYTHON to a Python \
         that has it"
    )
}

fn shared_server() -> &'static MotoServer {
    static SERVER: OnceLock<MotoServer> = OnceLock::new();
    SERVER.get_or_init(MotoServer::start)
}

/// One test's view of moto: its own empty account on the shared server.
pub struct Moto {
    server: &'static MotoServer,
    account_id: String,
}

impl Moto {
    /// A fresh, empty account on the shared moto server (started on first use).
    pub fn new() -> Moto {
        static NEXT_ACCOUNT: AtomicU64 = AtomicU64::new(100_000_000_001);
        Moto {
            server: shared_server(),
            account_id: format!("{:012}", NEXT_ACCOUNT.fetch_add(1, Ordering::Relaxed)),
        }
    }

    pub fn account_id(&self) -> &str {
        &self.account_id
    }

    pub fn endpoint(&self) -> String {
        self.server.endpoint()
    }

    /// SDK configuration for this account: static test credentials, us-east-1, no endpoint
    /// (the adapter gets the endpoint from its settings).
    pub fn sdk_config(&self) -> SdkConfig {
        let credentials = Credentials::new(
            format!("MOTOACCT{}", self.account_id),
            "moto-secret",
            None,
            None,
            "moto-harness",
        );
        SdkConfig::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(REGION))
            .credentials_provider(SharedCredentialsProvider::new(credentials))
            .build()
    }

    /// Adapter settings pointing at moto.
    pub fn settings(&self) -> AwsSettings {
        AwsSettings {
            endpoint_url: Some(self.endpoint()),
            ..AwsSettings::default()
        }
    }

    /// The adapter under test, talking to this account.
    pub async fn cloud(&self) -> AwsCloud {
        self.cloud_with(self.settings()).await
    }

    /// The adapter with custom settings (the endpoint is set to moto's).
    pub async fn cloud_with(&self, settings: AwsSettings) -> AwsCloud {
        let settings = AwsSettings {
            endpoint_url: Some(self.endpoint()),
            ..settings
        };
        let cloud = AwsCloud::from_conf(&self.sdk_config(), &settings).expect("adapter setup");
        cloud.check_credentials().await.expect("static credentials");
        cloud
    }

    /// A raw ECS client on this account, for arranging fixtures (its calls are not counted).
    pub fn ecs(&self) -> aws_sdk_ecs::Client {
        let config = aws_sdk_ecs::config::Builder::from(&self.sdk_config())
            .endpoint_url(self.endpoint())
            .build();
        aws_sdk_ecs::Client::from_conf(config)
    }

    /// A raw EC2 client on this account, for arranging fixtures (its calls are not counted).
    pub fn ec2(&self) -> aws_sdk_ec2::Client {
        let config = aws_sdk_ec2::config::Builder::from(&self.sdk_config())
            .endpoint_url(self.endpoint())
            .build();
        aws_sdk_ec2::Client::from_conf(config)
    }

    /// A raw Auto Scaling client on this account, for arranging fixtures (not counted).
    pub fn autoscaling(&self) -> aws_sdk_autoscaling::Client {
        let config = aws_sdk_autoscaling::config::Builder::from(&self.sdk_config())
            .endpoint_url(self.endpoint())
            .build();
        aws_sdk_autoscaling::Client::from_conf(config)
    }

    /// A raw DynamoDB client on this account, for arranging fixtures (not counted).
    pub fn dynamodb(&self) -> aws_sdk_dynamodb::Client {
        let config = aws_sdk_dynamodb::config::Builder::from(&self.sdk_config())
            .endpoint_url(self.endpoint())
            .build();
        aws_sdk_dynamodb::Client::from_conf(config)
    }

    /// The lease table `table` of this account, through the adapter (calls bounded by 5 s).
    pub fn lease_store(&self, table: &str) -> ecs_reconciler::cloud::aws::leases::DynamoStore {
        ecs_reconciler::cloud::aws::leases::DynamoStore::from_conf(
            &self.sdk_config(),
            &self.settings(),
            table,
            std::time::Duration::from_secs(5),
        )
    }

    /// Sets an EC2 instance's LaunchTime (epoch seconds).
    pub async fn set_launch_time(&self, instance_id: &str, epoch_seconds: u64) {
        self.harness(
            "/_harness/ec2/launch-time",
            json!({"instanceId": instance_id, "launchTime": epoch_seconds}),
        )
        .await;
    }

    /// Makes an awsvpc task's network interface attachment look as ECS reports it before the
    /// interface exists (`"PRECREATED"`: subnet only, no `networkInterfaceId`), or attached
    /// again (`"ATTACHED"`).
    pub async fn set_eni_attachment(&self, cluster: &str, task_arn: &str, status: &str) {
        self.set_task_state(cluster, task_arn, json!({"eniAttachment": status}))
            .await;
    }

    /// Puts a task into a lifecycle state with given fields, through the harness endpoint:
    /// `fields` as `{"lastStatus": "PROVISIONING", "createdAt": <epoch seconds>, ...}` (see
    /// `tests/moto/launcher.py`).
    /// Registers task definition `web` (one nginx container of 128 MiB), which the fixtures'
    /// services and tasks run.
    pub async fn register_web(&self) {
        use aws_sdk_ecs::types::ContainerDefinition;
        self.ecs()
            .register_task_definition()
            .family("web")
            .container_definitions(
                ContainerDefinition::builder()
                    .name("web")
                    .image("public.ecr.aws/nginx/nginx:latest")
                    .memory(128)
                    .build(),
            )
            .send()
            .await
            .unwrap();
    }

    /// A Fargate task of `web` in service `service:web` of `cluster`, held in PROVISIONING
    /// since `ago`. Returns its ARN.
    pub async fn stuck_web_task(&self, cluster: &str, ago: std::time::Duration) -> String {
        use std::time::{SystemTime, UNIX_EPOCH};
        let arn = self
            .ecs()
            .run_task()
            .cluster(cluster)
            .task_definition("web")
            .launch_type(aws_sdk_ecs::types::LaunchType::Fargate)
            .group("service:web")
            .send()
            .await
            .unwrap()
            .tasks()[0]
            .task_arn()
            .unwrap()
            .to_string();
        let created = (SystemTime::now() - ago)
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        self.set_task_state(
            cluster,
            &arn,
            json!({"lastStatus": "PROVISIONING", "createdAt": created}),
        )
        .await;
        arn
    }

    pub async fn set_task_state(&self, cluster: &str, task_arn: &str, fields: Value) {
        let mut body = json!({"cluster": cluster, "taskArn": task_arn});
        merge(&mut body, fields);
        self.harness("/_harness/ecs/task", body).await;
    }

    /// Makes ListTasks report `task_arn`, which DescribeTasks does not know (a task that
    /// vanished between the two calls).
    pub async fn add_ghost_task(&self, cluster: &str, task_arn: &str) {
        self.harness(
            "/_harness/ecs/ghost-task",
            json!({"cluster": cluster, "taskArn": task_arn}),
        )
        .await;
    }

    /// From now on, this account's calls to `operation` (ECS, EC2 or Auto Scaling) fail with
    /// `code` and HTTP `status`.
    pub async fn inject_fault(&self, operation: &str, code: &str, status: u16) {
        self.harness(
            "/_harness/fault",
            json!({"operation": operation, "code": code, "status": status}),
        )
        .await;
    }

    /// What GetConsoleOutput answers for `instance_id` from now on: `output` base64-encoded,
    /// or no output at all (`None`); with `latest_supported` false, `Latest=true` is refused
    /// with `UnsupportedOperation` (see `tests/moto/launcher.py`).
    pub async fn set_console_output(
        &self,
        instance_id: &str,
        output: Option<&[u8]>,
        latest_supported: bool,
    ) {
        use base64::Engine;
        let encoded = output.map(|b| base64::engine::general_purpose::STANDARD.encode(b));
        self.set_console_output_text(instance_id, encoded.as_deref(), latest_supported)
            .await;
    }

    /// As [`Moto::set_console_output`], with the `Output` text as given (not necessarily
    /// base64).
    pub async fn set_console_output_text(
        &self,
        instance_id: &str,
        output: Option<&str>,
        latest_supported: bool,
    ) {
        self.harness(
            "/_harness/ec2/console-output",
            json!({"instanceId": instance_id, "output": output, "latestSupported": latest_supported}),
        )
        .await;
    }

    /// Adds a scaling activity to `group` (DescribeScalingActivities answers newest first).
    pub async fn add_scaling_activity(
        &self,
        group: &str,
        status_code: &str,
        status_message: Option<&str>,
        start_epoch_seconds: u64,
    ) {
        self.harness(
            "/_harness/autoscaling/activity",
            json!({"group": group, "statusCode": status_code, "statusMessage": status_message,
                   "startTime": start_epoch_seconds}),
        )
        .await;
    }

    /// Adds an event to a service (DescribeServices reports them newest first).
    pub async fn add_service_event(
        &self,
        cluster: &str,
        service: &str,
        message: &str,
        created_epoch_seconds: u64,
    ) {
        self.harness(
            "/_harness/ecs/service-event",
            json!({"cluster": cluster, "service": service, "message": message,
                   "createdAt": created_epoch_seconds}),
        )
        .await;
    }

    /// Launches an EC2 instance (to register as a container instance); returns its id.
    pub async fn launch_ec2_instance(&self) -> String {
        let answer = self.harness("/_harness/ec2/instance", json!({})).await;
        answer["instanceId"]
            .as_str()
            .expect("instanceId")
            .to_string()
    }

    /// The default VPC's first subnet and default security group.
    pub async fn default_network(&self) -> (String, String) {
        let answer = self
            .harness("/_harness/ec2/default-network", json!({}))
            .await;
        (
            answer["subnetId"].as_str().expect("subnetId").to_string(),
            answer["securityGroupId"]
                .as_str()
                .expect("securityGroupId")
                .to_string(),
        )
    }

    /// POSTs `body` (plus this account and Region) to a harness endpoint; panics on failure.
    pub async fn harness(&self, path: &str, mut body: Value) -> Value {
        merge(
            &mut body,
            json!({"account": self.account_id, "region": REGION}),
        );
        let (status, answer) = post_json(self.server.port, path, &body).await;
        assert_eq!(status, 200, "harness {path} failed: {answer}");
        answer
    }
}

impl Default for Moto {
    fn default() -> Self {
        Moto::new()
    }
}

fn merge(into: &mut Value, from: Value) {
    if let (Value::Object(into), Value::Object(from)) = (into, from) {
        into.extend(from);
    }
}

/// A minimal HTTP/1.1 POST over a TcpStream (the harness endpoints need nothing more).
async fn post_json(port: u16, path: &str, body: &Value) -> (u16, Value) {
    let body = body.to_string();
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let mut stream = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect to moto");
    stream
        .write_all(request.as_bytes())
        .await
        .expect("send to moto");
    let mut response = Vec::new();
    stream
        .read_to_end(&mut response)
        .await
        .expect("read from moto");
    let response = String::from_utf8_lossy(&response);
    let (head, payload) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let payload = serde_json::from_str(payload).unwrap_or(Value::String(payload.to_string()));
    (status, payload)
}
