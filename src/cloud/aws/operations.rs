//! The one list of every AWS operation the adapter calls, with what its IAM grant must say.
//!
//! Each [`Operation`] names its service, its IAM action, its throttle category (the pacing
//! table in `src/cloud/budget.rs` must agree: a test checks), whether it reads or writes, and
//! the [`Scope`] its grant carries in the task role. [`IMPLIED`] lists the grants an operation
//! needs beyond its own action (RunTask with tags and roles; UpdateAutoScalingGroup, which Auto
//! Scaling checks as a launch from the template). The task role in
//! `deploy/cloudformation/ecs-reconciler.yaml` grants exactly these actions, the role of
//! `deploy/cloudformation/target-role.yaml` those of [`target_role_actions`], and
//! deploy/README.md's IAM section is [`iam_markdown`]; tests hold all three to this list, and
//! hold the list to what the adapter calls (`AwsCloud::calls()` and a scan of
//! `src/cloud/aws/`). The lease table's DynamoDB calls (`leases.rs`) are not paced by the
//! budget; `sts:AssumeRole` is called by aws-config's credentials provider, not by our source.
//! `sts:GetCallerIdentity` (the ambient account's id, `targets.rs`) needs no permission, so it
//! is not listed.

use std::fmt;

use crate::cloud::budget::Category;

/// The AWS service an operation belongs to, by its IAM prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Service {
    Ecs,
    Ec2,
    AutoScaling,
    Iam,
    Sqs,
    DynamoDb,
    Sts,
}

impl Service {
    /// The IAM action prefix (`ecs`, `autoscaling`).
    pub fn prefix(self) -> &'static str {
        match self {
            Service::Ecs => "ecs",
            Service::Ec2 => "ec2",
            Service::AutoScaling => "autoscaling",
            Service::Iam => "iam",
            Service::Sqs => "sqs",
            Service::DynamoDb => "dynamodb",
            Service::Sts => "sts",
        }
    }
}

/// Whether an operation only reads, or changes something.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
}

/// How narrowly the task role grants an action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scope {
    /// `Resource: "*"` with an `ecs:cluster` condition (`ArnLike`) on the clusters in scope.
    EcsCluster,
    /// `Resource`: the ARNs of the clusters in scope.
    ClusterArn,
    /// `Resource`: the account's EC2 instances in the Region (`instance/*`).
    Ec2Instance,
    /// `Resource: "*"` with `aws:ResourceTag/<key>` = `<value>`: Auto Scaling groups that carry
    /// the opt-in tag (`[managed_tag]`).
    ManagedGroup,
    /// As [`Scope::ManagedGroup`], and the tags written must be the controller's own
    /// (`aws:TagKeys` like `ecs-reconciler/*`), so it can never opt a group in itself.
    ManagedGroupOwnTags,
    /// `Resource: "*"` with `ecs:CreateAction` = `RunTask`: tags only on the tasks it starts.
    TagOnRunTask,
    /// `Resource: "*"` with `iam:PassedToService` = `ecs-tasks.amazonaws.com` (task and
    /// execution roles) or `ec2.amazonaws.com` (a launch template's instance profile).
    PassToTasksAndInstances,
    /// `Resource: "*"` with `ec2:LaunchTemplate` like the account's launch templates: Auto
    /// Scaling checks that whoever points a group at a launch template may launch from it.
    LaunchFromTemplate,
    /// `Resource: "*"` with `ec2:CreateAction` = `RunInstances`: tags at launch only.
    TagOnRunInstances,
    /// `Resource`: the events queue, only when the `EventsQueue` parameter is on.
    EventsQueue,
    /// `Resource`: the lease table's ARN, only when the `LeaseTable` parameter names one.
    LeaseTable,
    /// As [`Scope::LeaseTable`], only when the controller creates the table itself
    /// (`CreateLeaseTable=controller`, which sets `lease.create_table = true`).
    LeaseTableCreate,
    /// `Resource`: the roles of `[[targets]]` (the `TargetRoleArns` parameter), only when given.
    TargetRoles,
    /// `Resource: "*"`: the service supports no narrower resource for this action.
    Unscoped,
}

impl Scope {
    /// The grant's resource and condition, for people (deploy/README.md's IAM table).
    pub fn describe(self) -> &'static str {
        match self {
            Scope::EcsCluster => "`*`, condition `ecs:cluster` in the clusters in scope",
            Scope::ClusterArn => "the clusters in scope (cluster ARNs)",
            Scope::Ec2Instance => "the account's instances in the Region (`instance/*`)",
            Scope::ManagedGroup => {
                "`*`, condition `aws:ResourceTag/ecs-reconciler:managed` = `<ManagedTagValue>`"
            }
            Scope::ManagedGroupOwnTags => {
                "`*`, condition `aws:ResourceTag/ecs-reconciler:managed` = `<ManagedTagValue>` \
                 and `aws:TagKeys` like `ecs-reconciler/*`"
            }
            Scope::TagOnRunTask => "`*`, condition `ecs:CreateAction` = `RunTask`",
            Scope::PassToTasksAndInstances => {
                "`*`, condition `iam:PassedToService` = `ecs-tasks.amazonaws.com` or \
                 `ec2.amazonaws.com`"
            }
            Scope::LaunchFromTemplate => {
                "`*`, condition `ec2:LaunchTemplate` like the account's launch templates"
            }
            Scope::TagOnRunInstances => "`*`, condition `ec2:CreateAction` = `RunInstances`",
            Scope::EventsQueue => "the events queue (only with `EventsQueue=on`)",
            Scope::LeaseTable => "the lease table (only when `LeaseTable` names one)",
            Scope::LeaseTableCreate => "the lease table (only with `CreateLeaseTable=controller`)",
            Scope::TargetRoles => "the roles of `TargetRoleArns` (only when given)",
            Scope::Unscoped => "`*` (no narrower resource is supported or known in advance)",
        }
    }

    /// Whether the grant is on what the controller acts on, so that each account it reaches
    /// grants it too (`target-role.yaml`); the others are on the controller's own queue, lease
    /// table and target roles, in its own account.
    pub fn in_each_account(self) -> bool {
        !matches!(
            self,
            Scope::EventsQueue | Scope::LeaseTable | Scope::LeaseTableCreate | Scope::TargetRoles
        )
    }
}

/// One AWS operation the adapter calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Operation {
    pub service: Service,
    /// The API's name, as the SDK and `AwsCloud::calls()` name it (`DescribeTasks`).
    pub name: &'static str,
    /// The IAM action's name: the API's name, but for the few APIs IAM grants under another
    /// (DeleteMessageBatch is granted as `sqs:DeleteMessage`).
    pub iam_name: &'static str,
    pub category: Category,
    pub access: Access,
    pub scope: Scope,
    /// What the controller calls it for.
    pub purpose: &'static str,
}

impl Operation {
    /// The IAM action (`ecs:DescribeTasks`).
    pub fn action(&self) -> String {
        format!("{}:{}", self.service.prefix(), self.iam_name)
    }

    /// The same operation, granted by IAM under another action name.
    const fn granted_as(self, iam_name: &'static str) -> Operation {
        Operation { iam_name, ..self }
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.service.prefix(), self.iam_name)
    }
}

/// A grant an operation needs beyond its own action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Implied {
    pub service: Service,
    pub name: &'static str,
    /// The operation that needs it.
    pub by: &'static str,
    pub scope: Scope,
    pub purpose: &'static str,
}

impl Implied {
    pub fn action(&self) -> String {
        format!("{}:{}", self.service.prefix(), self.name)
    }
}

const fn op(
    service: Service,
    name: &'static str,
    category: Category,
    access: Access,
    scope: Scope,
    purpose: &'static str,
) -> Operation {
    Operation {
        service,
        name,
        iam_name: name,
        category,
        access,
        scope,
        purpose,
    }
}

use Access::{Read, Write};
use Category as C;
use Scope as S;
use Service::{AutoScaling, DynamoDb, Ec2, Ecs, Iam, Sqs, Sts};

/// Every operation the adapter calls, by service, reads first.
#[rustfmt::skip]
pub const OPERATIONS: &[Operation] = &[
    op(Ecs, "ListClusters", C::ClusterRead, Read, S::Unscoped, "clusters the policies select"),
    op(Ecs, "DescribeClusters", C::ClusterRead, Read, S::ClusterArn, "a cluster's ARN and capacity providers"),
    op(Ecs, "ListServices", C::ServiceRead, Read, S::EcsCluster, "services of a cluster"),
    op(Ecs, "DescribeServices", C::ServiceRead, Read, S::EcsCluster, "desired counts and events"),
    op(Ecs, "ListTasks", C::ClusterResourceRead, Read, S::EcsCluster, "tasks of a cluster"),
    op(Ecs, "DescribeTasks", C::ClusterResourceRead, Read, S::EcsCluster, "task states, stop reasons, tags"),
    op(Ecs, "ListContainerInstances", C::ClusterResourceRead, Read, S::ClusterArn, "container instances of a cluster"),
    op(Ecs, "DescribeContainerInstances", C::ClusterResourceRead, Read, S::EcsCluster, "agent connectivity and registration"),
    op(Ecs, "DescribeCapacityProviders", C::CapacityProviderRead, Read, S::Unscoped, "a provider's Auto Scaling group"),
    op(Ecs, "StopTask", C::ClusterResourceModify, Write, S::EcsCluster, "replace a stuck task"),
    op(Ecs, "RunTask", C::ClusterResourceModify, Write, S::EcsCluster, "start a standalone task's replacement"),
    op(Ecs, "UpdateContainerInstancesState", C::ClusterResourceModify, Write, S::EcsCluster, "drain a disconnected container instance"),
    op(Ec2, "DescribeNetworkInterfaces", C::Ec2Describe, Read, S::Unscoped, "security groups of standalone awsvpc tasks"),
    op(Ec2, "DescribeLaunchTemplates", C::Ec2Describe, Read, S::Unscoped, "what $Latest and $Default stand for"),
    op(Ec2, "DescribeInstances", C::Ec2Describe, Read, S::Unscoped, "the version each instance launched from"),
    op(Ec2, "DescribeLaunchTemplateVersions", C::Ec2Describe, Read, S::Unscoped, "root cause: UserData and instance profile"),
    op(Ec2, "DescribeInstanceTypes", C::Ec2Describe, Read, S::Unscoped, "root cause: instance type sizes"),
    op(Ec2, "GetConsoleOutput", C::Ec2Describe, Read, S::Ec2Instance, "root cause: boot output"),
    op(AutoScaling, "DescribeAutoScalingGroups", C::AutoScaling, Read, S::Unscoped, "groups behind capacity providers, their tags"),
    op(AutoScaling, "DescribeAutoScalingInstances", C::AutoScaling, Read, S::Unscoped, "confirm an instance is gone after a refusal"),
    op(AutoScaling, "DescribeScalingActivities", C::AutoScaling, Read, S::Unscoped, "root cause: failing launches"),
    op(AutoScaling, "CreateOrUpdateTags", C::AutoScaling, Write, S::ManagedGroupOwnTags, "record a cordon or a nudge on the group"),
    op(AutoScaling, "UpdateAutoScalingGroup", C::AutoScaling, Write, S::ManagedGroup, "pin a known-good launch template version"),
    op(AutoScaling, "TerminateInstanceInAutoScalingGroup", C::AutoScaling, Write, S::ManagedGroup, "terminate never-registered instances"),
    op(AutoScaling, "SetDesiredCapacity", C::AutoScaling, Write, S::ManagedGroup, "nudge capacity"),
    op(Sqs, "GetQueueAttributes", C::Other, Read, S::EventsQueue, "check the events queue at start"),
    op(Sqs, "ReceiveMessage", C::Other, Read, S::EventsQueue, "events from the queue"),
    op(Sqs, "DeleteMessageBatch", C::Other, Write, S::EventsQueue, "delete the events applied").granted_as("DeleteMessage"),
    op(DynamoDb, "DescribeTable", C::Other, Read, S::LeaseTable, "check the lease table's key at start"),
    op(DynamoDb, "Scan", C::Other, Read, S::LeaseTable, "read the leases (consistent)"),
    op(DynamoDb, "PutItem", C::Other, Write, S::LeaseTable, "claim or renew a lease (conditional on its version)"),
    op(DynamoDb, "CreateTable", C::Other, Write, S::LeaseTableCreate, "create a missing lease table, only with `lease.create_table = true`"),
    // Read: it changes nothing, and a dry run needs it too.
    op(Sts, "AssumeRole", C::Other, Read, S::TargetRoles, "credentials of each `[[targets]]` `role_arn` (aws-config's assume-role provider)"),
];

/// Grants an operation needs beyond its own action.
pub const IMPLIED: &[Implied] = &[
    Implied {
        service: Ecs,
        name: "TagResource",
        by: "RunTask",
        scope: S::TagOnRunTask,
        purpose: "RunTask with tags (the replacement carries its original's tags)",
    },
    Implied {
        service: Iam,
        name: "PassRole",
        by: "RunTask, UpdateAutoScalingGroup",
        scope: S::PassToTasksAndInstances,
        purpose: "a task definition's task or execution role; a pinned version's instance profile",
    },
    Implied {
        service: Ec2,
        name: "RunInstances",
        by: "UpdateAutoScalingGroup",
        scope: S::LaunchFromTemplate,
        purpose: "Auto Scaling checks it when a group is pointed at a launch template version \
                  (the controller never launches an instance itself)",
    },
    Implied {
        service: Ec2,
        name: "CreateTags",
        by: "UpdateAutoScalingGroup",
        scope: S::TagOnRunInstances,
        purpose: "checked as RunInstances is, for a version with tag specifications",
    },
];

/// The operation called `name` (`DescribeTasks`), if the adapter calls it.
pub fn find(name: &str) -> Option<&'static Operation> {
    OPERATIONS.iter().find(|o| o.name == name)
}

/// Every IAM action the task role must grant: each operation's and each implied one.
pub fn granted_actions() -> Vec<String> {
    let mut actions: Vec<String> = OPERATIONS
        .iter()
        .map(Operation::action)
        .chain(IMPLIED.iter().map(Implied::action))
        .collect();
    actions.sort();
    actions
}

/// Every IAM action a target account's role must grant (`target-role.yaml`): those of the
/// scopes [`Scope::in_each_account`].
pub fn target_role_actions() -> Vec<String> {
    let mut actions: Vec<String> = OPERATIONS
        .iter()
        .filter(|o| o.scope.in_each_account())
        .map(Operation::action)
        .chain(
            IMPLIED
                .iter()
                .filter(|i| i.scope.in_each_account())
                .map(Implied::action),
        )
        .collect();
    actions.sort();
    actions
}

/// deploy/README.md's IAM table: one row per granted action, with its resource and condition.
pub fn iam_markdown() -> String {
    let mut out =
        String::from("| action | access | resource and condition | for |\n|---|---|---|---|\n");
    for o in OPERATIONS {
        let access = match o.access {
            Read => "read",
            Write => "write",
        };
        out.push_str(&format!(
            "| `{}` | {access} | {} | {} |\n",
            o.action(),
            o.scope.describe(),
            o.purpose
        ));
    }
    for i in IMPLIED {
        out.push_str(&format!(
            "| `{}` | write (with `{}`) | {} | {} |\n",
            i.action(),
            i.by,
            i.scope.describe(),
            i.purpose
        ));
    }
    out
}
