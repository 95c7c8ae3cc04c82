//! The contract on the simulated account, on tokio's paused clock.

use std::collections::BTreeMap;
use std::time::{Duration, UNIX_EPOCH};

use ecs_reconciler::cloud::ErrorCategory;
use ecs_reconciler::cloud::sim::ServiceSpec;
use ecs_reconciler::cloud::sim::{
    GroupSpec, LaunchSpec, SimAccount, TaskBehavior, TemplateVersion, VersionSpec,
};

use ecs_reconciler::domain::{NetworkConfig, RunTaskRequest};

use super::{Account, Seeded, Shape, fargate_request};

const SECURITY_GROUP: &str = "sg-0123456789abcdef0";

struct SimContract {
    sim: SimAccount,
}

impl SimContract {
    fn new() -> Self {
        SimContract {
            sim: SimAccount::new(UNIX_EPOCH + Duration::from_secs(1_736_900_000)),
        }
    }
}

fn version(text: &str) -> TemplateVersion {
    match text {
        "$Latest" => TemplateVersion::Latest,
        "$Default" => TemplateVersion::Default,
        n => TemplateVersion::Number(n.parse().expect("a version number")),
    }
}

impl Account for SimContract {
    type C = SimAccount;

    fn cloud(&self) -> &SimAccount {
        &self.sim
    }

    async fn seed(&self, cluster: &str, shape: Shape) -> Seeded {
        let sim = &self.sim;
        sim.add_cluster(cluster);
        for n in 0..shape.services {
            sim.add_service(cluster, ServiceSpec::new(&format!("svc-{n:02}"), 0));
        }
        let mut seeded = Seeded::default();
        for _ in 0..shape.tasks {
            let arn = sim.start_task(cluster, &fargate_request(), TaskBehavior::healthy());
            seeded.task_arns.push(arn);
        }
        if shape.awsvpc_tasks > 0 {
            seeded.security_group = SECURITY_GROUP.to_string();
        }
        for _ in 0..shape.awsvpc_tasks {
            let request = RunTaskRequest {
                task_definition: "batch".into(),
                network: Some(NetworkConfig {
                    subnets: vec!["subnet-0123456789abcdef0".into()],
                    security_groups: vec![SECURITY_GROUP.into()],
                    assign_public_ip: Some(false),
                }),
                ..fargate_request()
            };
            let arn = sim.start_task(cluster, &request, TaskBehavior::healthy());
            seeded.task_arns.push(arn);
        }
        for n in 0..shape.container_instances {
            let arn = sim.add_container_instance(cluster, &format!("i-{n:017x}"));
            seeded.container_instance_arns.push(arn);
        }
        let mut groups = Vec::new();
        for group in &shape.groups {
            let template =
                sim.add_launch_template(&format!("lt-{}", group.name), VersionSpec::default());
            let mut spec = GroupSpec::new(group.name, cluster, &template, group.instances)
                .with_launch(LaunchSpec::Template {
                    template_id: template.clone(),
                    version: version(group.version),
                });
            // Moto's instances never register with ECS: these join no cluster either.
            spec.cluster = None;
            sim.add_auto_scaling_group(spec);
            sim.add_capacity_provider(cluster, &format!("cp-{}", group.name), Some(group.name));
            groups.push((group.name, template));
        }
        tokio::time::advance(Duration::from_secs(60)).await;
        for (name, template) in groups {
            let instances = sim
                .auto_scaling_group(name)
                .expect("the group")
                .instances
                .into_iter()
                .map(|i| i.instance_id)
                .collect();
            seeded
                .groups
                .insert(name.to_string(), (template, instances));
        }
        sim.reset_calls();
        seeded
    }

    async fn fail(&self, operation: &str, category: ErrorCategory) {
        self.sim.fail_always(operation, category);
    }

    async fn clear_faults(&self) {
        self.sim.clear_faults();
    }

    async fn settle(&self) {
        tokio::time::advance(Duration::from_secs(60)).await;
    }

    fn calls(&self) -> BTreeMap<String, u64> {
        self.sim.calls()
    }

    fn reset_calls(&self) {
        self.sim.reset_calls();
    }
}

macro_rules! on_sim {
    ($($name:ident),* $(,)?) => {$(
        #[tokio::test(start_paused = true)]
        async fn $name() {
            super::$name(SimContract::new()).await;
        }
    )*};
}

crate::contract_bodies!(on_sim);
