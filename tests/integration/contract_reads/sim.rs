//! The root-cause reads' contract, run against the simulated account on tokio's paused clock.

use std::cell::Cell;
use std::time::{Duration, UNIX_EPOCH};

use ecs_reconciler::cloud::Cloud;
use ecs_reconciler::cloud::sim::capacity::{CONSOLE_OUTPUT_DELAY, INSTANCE_START};
use ecs_reconciler::cloud::sim::{GroupSpec, SimAccount, VersionBehavior, VersionSpec};

use super::{ReadsAccount, Seed, Seeded};

struct SimReads {
    sim: SimAccount,
    /// Seeds made so far: each gets its own template and group, as on moto.
    seeds: Cell<u32>,
}

impl SimReads {
    fn new() -> Self {
        SimReads {
            sim: SimAccount::new(UNIX_EPOCH + Duration::from_secs(1_736_900_000)),
            seeds: Cell::new(0),
        }
    }
}

impl ReadsAccount for SimReads {
    type C = SimAccount;

    async fn seed(&self, seed: &Seed<'_>) -> Seeded {
        let n = self.seeds.get() + 1;
        self.seeds.set(n);
        let group_name = format!("contract-asg-{n}");
        let group_name = group_name.as_str();
        let sim = &self.sim;
        if n == 1 {
            sim.add_cluster("contract");
        }
        let spec = VersionSpec::new(VersionBehavior::good(Duration::from_secs(60)))
            .with_user_data_base64(seed.user_data_b64)
            .with_instance_profile(seed.instance_profile)
            .with_instance_type(seed.instance_type)
            .with_boot_output(seed.boot_output);
        let template_id = sim.add_launch_template(&format!("contract-lt-{n}"), spec);
        sim.add_auto_scaling_group(GroupSpec::new(group_name, "contract", &template_id, 1));
        // EC2 has the console output a few minutes after launch.
        tokio::time::advance(CONSOLE_OUTPUT_DELAY.max(INSTANCE_START)).await;
        if let Some(message) = seed.failed_launch {
            sim.fail_launches(group_name, Some(message));
            tokio::time::advance(Duration::from_secs(1)).await;
            sim.set_desired_capacity(group_name, 2)
                .await
                .expect("within bounds");
        }
        let group = sim
            .auto_scaling_group(group_name)
            .expect("the group exists");
        let instance = &group.instances[0];
        sim.reset_calls();
        Seeded {
            group: group_name.to_string(),
            template_id,
            version: 1,
            instance_id: instance.instance_id.clone(),
            instance_type: instance.instance_type.clone().expect("an instance type"),
        }
    }

    fn cloud(&self) -> &SimAccount {
        &self.sim
    }

    fn calls(&self) -> std::collections::BTreeMap<String, u64> {
        self.sim.calls()
    }
}

macro_rules! contract {
    ($($name:ident),* $(,)?) => {$(
        #[tokio::test(start_paused = true)]
        async fn $name() {
            super::$name(SimReads::new()).await;
        }
    )*};
}

contract!(
    console_output_is_the_instances,
    empty_console_output_is_not_available_yet,
    console_output_of_an_unknown_instance_is_not_found,
    launch_template_version_is_as_seeded,
    unknown_launch_template_version_is_not_found,
    scaling_activities_are_newest_first_with_the_failure,
    scaling_activities_of_an_unknown_group_are_not_found,
    instance_type_size_is_documented,
    unknown_instance_type_is_not_found,
);
