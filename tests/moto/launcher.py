"""Starts moto 5.2.5's server in-process, patched to behave closer to real Amazon ECS.

Used by the Rust test harness (tests/integration/support/moto.rs). The server listens on
127.0.0.1 on a free port and prints `PORT <n>` on one line as soon as it accepts connections.
It exits when its standard input closes, so it never outlives the test process that spawned it.

Every patch below names the moto gap it fixes (see docs/design.md §5). The patches make moto
closer to ECS; they never make the emulator more lenient than ECS.

Harness-only endpoints (not AWS APIs), all `POST` with a JSON body; `account` (default
123456789012) and `region` (default us-east-1) select the backend:

- `/_harness/ecs/task` {cluster, taskArn, lastStatus?, desiredStatus?, healthStatus?,
  stoppedReason?, createdAt?, pullStartedAt?, pullStoppedAt?, connectivityAt?, startedAt?,
  stoppingAt?, executionStoppedAt?, stoppedAt? (epoch seconds, or null to clear), stopCode?,
  eniAttachment? ("PRECREATED" or "ATTACHED")}: puts a task into any lifecycle state with the
  given timestamps. Moving a task to a state before RUNNING clears the timestamps that state
  has not reached yet. `eniAttachment` PRECREATED makes an awsvpc task's attachment look as
  ECS reports it before the interface exists (subnetId, no networkInterfaceId); ATTACHED
  brings the interface details back.
- `/_harness/ecs/ghost-task` {cluster, taskArn}: makes ListTasks (desired RUNNING) report an ARN
  that DescribeTasks does not know, like a task that vanished between the two calls.
- `/_harness/ecs/container-instance` {cluster, containerInstanceArn, agentConnected?, status?}.
- `/_harness/ec2/instance` {}: launches one EC2 instance, answers {"instanceId": ...} (for
  RegisterContainerInstance, whose identity document must name an existing instance).
- `/_harness/ec2/default-network` {}: answers {"subnetId", "securityGroupId"} of the default VPC.
- `/_harness/ec2/launch-time` {instanceId, launchTime (epoch seconds)}: sets an EC2 instance's
  LaunchTime (moto stamps the moment it was created and offers no way to change it).
- `/_harness/ecs/service-event` {cluster, service, message, createdAt? (epoch seconds)}: adds
  an event to a service, newest first, as DescribeServices reports them.
- `/_harness/ec2/console-output` {instanceId, output (base64 text, or null for "no output
  yet"), latestSupported? (default true)}: what GetConsoleOutput answers for that instance
  from now on; with `latestSupported` false, a request with `Latest=true` is refused with
  `UnsupportedOperation`, as EC2 refuses it on instance types without the serial console.
- `/_harness/autoscaling/activity` {group, statusCode, statusMessage?, description?, cause?,
  startTime (epoch seconds)}: adds a scaling activity to a group, for
  DescribeScalingActivities.
- `/_harness/fault` {operation, code?, status?, message?}: from now on, that account's calls to
  the ECS, EC2, Auto Scaling or SQS operation (e.g. "StopTask", "DescribeNetworkInterfaces",
  "UpdateAutoScalingGroup") answer `status` (default 400) with error `code` (default
  AccessDeniedException), in the protocol's error format (JSON for ECS, EC2's query XML for
  EC2, the wrapped query XML `ErrorResponse` for Auto Scaling, SQS's JSON with
  `x-amzn-query-error`).
- `/_harness/fault/clear` {operation?}: ends that operation's fault (a throttled queue that
  answers again), or, without `operation`, every fault injected for that account.

- `/_harness/iam/role` {account, name, externalId?}: creates an IAM role that AssumeRole
  accepts (with that ExternalId only, when given); answers {"arn": ...}.
- `/_harness/calls` {}: the StopTask requests that reached moto, per task ARN:
  {"StopTask": {"arn:...": 1}} (after faults; the SDK's retries count).

Faults may also name a `sessionToken` instead of the account: then only requests that carry
that session token (X-Amz-Security-Token) fail, so that one of several processes sharing an
account can be cut off (from DynamoDB, say) while the others are not. DynamoDB operations ("PutItem", "Scan") answer in
DynamoDB's JSON error format.

Isolation: a request whose access key id is `MOTOACCT` followed by 12 digits is served by the account with those digits as its id, so tests
sharing one server each get their own empty account (moto otherwise maps every unknown access
key to 123456789012).

Gap: moto's DynamoDB reads an item, evaluates a put's condition and stores the item without a
lock (moto/dynamodb/models/table.py, Table.put_item), so two concurrent conditional writes on
one version could both succeed, which DynamoDB never allows. The launcher serialises every
DynamoDB request, which makes each conditional write atomic, as in DynamoDB.
"""

from __future__ import annotations

import base64
import io
import json
import re
import sys
import threading
from datetime import datetime, timezone
from typing import Any
from urllib.parse import parse_qs
from xml.sax.saxutils import escape

from werkzeug.serving import make_server

import moto.iam.models as iam_models
from moto.autoscaling import models as asg_models
from moto.autoscaling.exceptions import ValidationError as AsgValidationError
from moto.core import DEFAULT_ACCOUNT_ID
from moto.core.responses import ActionResult
from moto.core.utils import utcnow
from moto.ec2 import ec2_backends
from moto.ec2.exceptions import EC2ClientError
from moto.ec2.responses.general import General as Ec2General
from moto.autoscaling import responses as asg_responses
from moto.ecs import models as ecs_models
from moto.ecs import responses as ecs_responses
from moto.ecs.exceptions import InvalidParameterException
from moto.moto_api import state_manager
from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)

ECS_TARGET_PREFIX = "AmazonEC2ContainerServiceV20141113."
SQS_TARGET_PREFIX = "AmazonSQS."
DYNAMODB_TARGET_PREFIX = "DynamoDB_20120810."
# Makes each DynamoDB request, and so each conditional write, atomic (see the module's doc).
DYNAMODB_LOCK = threading.Lock()
# StopTask requests per (account, task ARN), for /_harness/calls.
STOP_TASK_CALLS: dict[tuple[str, str], int] = {}
STOP_TASK_LOCK = threading.Lock()
TIMESTAMPS = {
    "createdAt": "created_at",
    "pullStartedAt": "pull_started_at",
    "pullStoppedAt": "pull_stopped_at",
    "connectivityAt": "connectivity_at",
    "startedAt": "started_at",
    "stoppingAt": "stopping_at",
    "executionStoppedAt": "execution_stopped_at",
    "stoppedAt": "stopped_at",
}
LIFECYCLE = [
    "PROVISIONING",
    "PENDING",
    "ACTIVATING",
    "RUNNING",
    "DEACTIVATING",
    "STOPPING",
    "DEPROVISIONING",
    "STOPPED",
]
# The first state in which each timestamp is set; moving a task back before it clears it.
TIMESTAMP_REACHED_IN = {
    "created_at": "PROVISIONING",
    "pull_started_at": "PENDING",
    "pull_stopped_at": "PENDING",
    "connectivity_at": "PENDING",
    "started_at": "RUNNING",
    "stopping_at": "DEACTIVATING",
    "execution_stopped_at": "STOPPING",
    "stopped_at": "STOPPED",
}

# Per-account harness state (guarded by the GIL; each test uses its own account).
FAULTS: dict[tuple[str, str], dict[str, Any]] = {}
CONSOLE_OUTPUTS: dict[tuple[str, str], dict[str, Any]] = {}
ACTIVITIES: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
GHOSTS: dict[tuple[str, str, str], list[str]] = {}
CLIENT_TOKENS: dict[tuple[str, str, str, str], list[Any]] = {}


# --- Isolation: access key id MOTOACCT<12 digits> = that account ----------------------------
# (moto only recognizes 20-character access key ids, hence the prefix.)

_original_account_from = iam_models.get_account_id_from


def _account_from_access_key(access_key: str) -> str:
    match = re.fullmatch(r"MOTOACCT(\d{12})", access_key or "")
    if match:
        return match.group(1)
    return _original_account_from(access_key)


iam_models.get_account_id_from = _account_from_access_key


# --- Gap: moto's STS assumes any role --------------------------------------------------------
# moto answers AssumeRole for any ARN, existing or not, and reads no trust policy, so a target
# whose role cannot be assumed cannot be shown. Here AssumeRole needs the role to exist in its
# account's IAM (AWS refuses a missing role as AccessDenied), and a trust policy with an
# `sts:ExternalId` condition (StringEquals) needs that ExternalId. Other trust conditions and
# principals are not evaluated. `/_harness/iam/role` creates such a role.

import moto.sts.models as sts_models
from moto.sts.exceptions import STSClientError

_original_assume_role = sts_models.STSBackend.assume_role


def _required_external_id(document: str) -> str | None:
    try:
        statements = json.loads(document).get("Statement", [])
    except (ValueError, AttributeError):
        return None
    for statement in statements if isinstance(statements, list) else [statements]:
        wanted = statement.get("Condition", {}).get("StringEquals", {}).get("sts:ExternalId")
        if wanted is not None:
            return wanted
    return None


def _assume_role_checked(self: Any, **kwargs: Any) -> Any:
    arn = kwargs["role_arn"]
    denied = STSClientError(
        "AccessDenied", f"User is not authorized to perform: sts:AssumeRole on resource: {arn}"
    )
    parts = arn.split(":")
    if len(parts) < 6:
        raise denied
    try:
        role = iam_models.iam_backends[parts[4]]["global"].get_role_by_arn(arn)
    except Exception:
        raise denied from None
    wanted = _required_external_id(role.assume_role_policy_document)
    if wanted is not None and kwargs.get("external_id") != wanted:
        raise denied
    return _original_assume_role(self, **kwargs)


sts_models.STSBackend.assume_role = _assume_role_checked


# --- Gap: tasks are held still by the state manager --------------------------------------------
# moto advances a task one state toward STOPPED on every DescribeTasks. Real ECS never changes a
# task because someone looked at it; with "manual" progression and a huge count it never moves.
state_manager.set_transition(
    model_name="ecs::task", transition={"progression": "manual", "times": 1_000_000_000}
)


# --- Gap: tasks carry no timestamps, no health status, no launch type by default ---------------

_original_task_init = ecs_models.Task.__init__


def _task_init(self: Any, *args: Any, **kwargs: Any) -> None:
    _original_task_init(self, *args, **kwargs)
    # moto creates tasks directly in RUNNING: give them the timestamps a RUNNING task has.
    now = utcnow()
    for attr in ("created_at", "pull_started_at", "pull_stopped_at", "connectivity_at", "started_at"):
        setattr(self, attr, now)
    for attr in ("stopping_at", "execution_stopped_at", "stopped_at"):
        setattr(self, attr, None)
    # ECS reports UNKNOWN until a container health check has a verdict.
    self.health_status = "UNKNOWN"
    # With neither a launch type nor a capacity provider, ECS uses the EC2 launch type and says
    # so; moto leaves launchType empty.
    if not self.launch_type and not self.capacity_provider_name:
        self.launch_type = "EC2"
    if not self.stopped_reason:
        self.stopped_reason = None
    # ECS reports a task's task-level CPU and memory (from its task definition); moto reports
    # neither. `stopCode` is set by StopTask below, or by the harness.
    definition = args[1] if len(args) > 1 else kwargs.get("task_definition")
    self.cpu = getattr(definition, "cpu", None)
    self.memory = getattr(definition, "memory", None)
    if not hasattr(self, "stop_code"):
        self.stop_code = None


ecs_models.Task.__init__ = _task_init


# --- Gap: StopTask skips the way down's timestamps and answers 500 for unknown tasks -----------


def _stop_task(self: Any, cluster_str: str, task_str: str, reason: str) -> Any:
    cluster = self._get_cluster(cluster_str)
    task_id = task_str.split("/")[-1]
    for arn, task in self.tasks.get(cluster.name, {}).items():
        if arn.split("/")[-1] == task_id:
            if task.container_instance_arn:
                instance = self.container_instances[cluster.name].get(
                    task.container_instance_arn.split("/")[-1]
                )
                if instance is not None and task.desired_status != "STOPPED":
                    self.update_container_instance_resources(
                        instance, task.resource_requirements, removing=True
                    )
                    self.update_cluster_resources(cluster, -1, task_state="RUNNING")
            now = utcnow()
            task.last_status = "STOPPED"
            task.desired_status = "STOPPED"
            task.stopped_reason = reason
            task.stop_code = "UserInitiated"
            for attr in ("stopping_at", "execution_stopped_at", "stopped_at"):
                if getattr(task, attr, None) is None:
                    setattr(task, attr, now)
            return task
    # ECS answers InvalidParameterException for a task it does not know (moto: HTTP 500).
    raise InvalidParameterException("The referenced task was not found.")


ecs_models.EC2ContainerServiceBackend.stop_task = _stop_task


# --- Gap: DescribeTasks ignores unknown ARNs and looks in every cluster -------------------------


def _find_tasks(backend: Any, cluster_str: str, wanted: list[str]) -> tuple[list[Any], list[dict]]:
    cluster = backend._get_cluster(cluster_str)
    if not wanted:
        raise InvalidParameterException("Tasks cannot be empty.")
    if len(wanted) > 100:
        raise InvalidParameterException("Tasks can have at most 100 items.")
    by_id = {arn.split("/")[-1]: t for arn, t in backend.tasks.get(cluster.name, {}).items()}
    found, failures = [], []
    for ref in wanted:
        task = by_id.get(ref.split("/")[-1])
        if task is None:
            # ECS names a task it does not (any longer) know in failures[] with reason MISSING.
            failures.append({"arn": ref, "reason": "MISSING"})
        else:
            found.append(task)
    return found, failures


def _describe_tasks_response(self: Any) -> Any:
    cluster = self._get_param("cluster", "default")
    tasks, failures = _find_tasks(self.ecs_backend, cluster, self._get_param("tasks", []))
    if "TAGS" in self._get_param("include", []):
        self._include_in_response(ecs_responses.DESCRIBE_TASKS_TAGS)
    else:
        self._exclude_from_response(ecs_responses.DESCRIBE_TASKS_TAGS)
    return ecs_responses.ActionResult({"tasks": tasks, "failures": failures})


ecs_responses.EC2ContainerServiceResponse.describe_tasks = _describe_tasks_response


# --- Gap: ListTasks ignores desiredStatus's default, serviceName, maxResults; never pages -------


def _list_tasks_response(self: Any) -> Any:
    backend = self.ecs_backend
    cluster_str = self._get_param("cluster", "default")
    desired = self._get_param("desiredStatus") or "RUNNING"  # ECS's default filter
    service_name = self._get_param("serviceName")
    container_instance = self._get_param("containerInstance")
    max_results = self._get_int_param("maxResults", 100)
    if not 1 <= max_results <= 100:
        raise InvalidParameterException("maxResults must be between 1 and 100.")
    cluster = backend._get_cluster(cluster_str)
    tasks = backend.list_tasks(
        cluster.name, None, self._get_param("family"), self._get_param("startedBy"), None, desired
    )
    tasks = [t for t in tasks if t.cluster_arn == cluster.arn]
    if container_instance:
        ci_id = container_instance.split("/")[-1]
        tasks = [
            t for t in tasks
            if t.container_instance_arn and t.container_instance_arn.split("/")[-1] == ci_id
        ]
    if service_name:
        tasks = [t for t in tasks if t.group == f"service:{service_name.split('/')[-1]}"]
    arns = [t.task_arn for t in tasks]
    if desired == "RUNNING":
        arns += GHOSTS.get((self.current_account, self.region, cluster.name), [])
    start = 0
    token = self._get_param("nextToken")
    if token:
        try:
            start = int(base64.b64decode(token).decode())
        except Exception:
            raise InvalidParameterException("Invalid nextToken.")
    page = arns[start : start + max_results]
    result: dict[str, Any] = {"taskArns": page}
    if start + max_results < len(arns):
        result["nextToken"] = base64.b64encode(str(start + max_results).encode()).decode()
    return ecs_responses.ActionResult(result)


ecs_responses.EC2ContainerServiceResponse.list_tasks = _list_tasks_response


# --- Gap: RunTask ignores clientToken ------------------------------------------------------------

_original_run_task_response = ecs_responses.EC2ContainerServiceResponse.run_task


def _run_task_response(self: Any) -> Any:
    token = self._get_param("clientToken")
    if not token:
        return _original_run_task_response(self)
    if len(token) > 64:
        raise InvalidParameterException("clientToken can have at most 64 characters.")
    cluster = self.ecs_backend._get_cluster(self._get_param("cluster", "default"))
    key = (self.current_account, self.region, cluster.name, token)
    # ECS answers a repeated token with the tasks the first request started.
    if key in CLIENT_TOKENS:
        return ecs_responses.ActionResult({"tasks": CLIENT_TOKENS[key], "failures": []})
    result = _original_run_task_response(self)
    CLIENT_TOKENS[key] = result.result["tasks"]
    return result


ecs_responses.EC2ContainerServiceResponse.run_task = _run_task_response


# --- Gap: every Auto Scaling instance reports the template's default version -------------------
# moto launches a group's instances with the group's configured version (instance type, image...)
# but tells EC2 no version, so EC2 tags every instance `aws:ec2launchtemplate:version` = the
# default version, and DescribeAutoScalingGroups reports the default version for every instance.
# AWS stamps the version EC2 actually launched from on the instance (that tag, always a number),
# and Auto Scaling reports each instance's launch template as the group was configured when it
# launched the instance (a number, `$Latest` or `$Default`). Recorded per instance here.
LT_VERSION_TAG = "aws:ec2launchtemplate:version"

_original_replace_instances = asg_models.FakeAutoScalingGroup.replace_autoscaling_group_instances


def _replace_instances(self: Any, count_needed: int, propagated_tags: dict) -> None:
    before = {id(state) for state in self.instance_states}
    _original_replace_instances(self, count_needed, propagated_tags)
    if self.ec2_launch_template is None:
        return
    configured = self.launch_template_version  # as configured: a number, $Latest or $Default
    number = str(self.ec2_launch_template.get_version(configured).number)
    for state in self.instance_states:
        if id(state) not in before:
            state.instance.add_tags({LT_VERSION_TAG: number})
            state.instance._harness_launch_template_version = configured


asg_models.FakeAutoScalingGroup.replace_autoscaling_group_instances = _replace_instances


def _instance_launch_template(self: Any) -> dict | None:
    group = self.auto_scaling_group
    if group is None or group.ec2_launch_template is None:
        return None
    template = group.ec2_launch_template
    return {
        "LaunchTemplateId": template.id,
        "LaunchTemplateName": template.name,
        "Version": getattr(
            self.instance, "_harness_launch_template_version", str(template.default_version_number)
        ),
    }


asg_models.InstanceState.launch_template = property(_instance_launch_template)


# --- Gap: unknown groups and instances answer HTTP 500 (a Python KeyError / StopIteration) ------
# Auto Scaling answers ValidationError naming what it did not find.


def _group_or_fail(backend: Any, name: str) -> Any:
    if name not in backend.autoscaling_groups:
        raise AsgValidationError(f"AutoScalingGroup name not found - AutoScalingGroup '{name}' not found")
    return backend.autoscaling_groups[name]


_original_set_desired = asg_models.AutoScalingBackend.set_desired_capacity


def _set_desired_capacity(self: Any, group_name: str, desired_capacity: Any) -> None:
    group = _group_or_fail(self, group_name)
    if desired_capacity is not None and not (
        (group.min_size or 0) <= int(desired_capacity) <= (group.max_size or 0)
    ):
        # Auto Scaling refuses a desired capacity outside [MinSize, MaxSize].
        raise AsgValidationError(
            f"New SetDesiredCapacity value {desired_capacity} is outside of the range "
            f"[{group.min_size}, {group.max_size}]."
        )
    _original_set_desired(self, group_name, desired_capacity)


asg_models.AutoScalingBackend.set_desired_capacity = _set_desired_capacity

_original_create_or_update_tags = asg_models.AutoScalingBackend.create_or_update_tags


def _create_or_update_tags(self: Any, tags: list) -> None:
    for tag in tags:
        _group_or_fail(self, tag["ResourceId"])
    _original_create_or_update_tags(self, tags)


asg_models.AutoScalingBackend.create_or_update_tags = _create_or_update_tags

_original_terminate_instance = asg_models.AutoScalingBackend.terminate_instance


def _terminate_instance(self: Any, instance_id: str, should_decrement: bool) -> Any:
    known = any(
        state.instance.id == instance_id
        for group in self.autoscaling_groups.values()
        for state in group.instance_states
    )
    if not known:
        raise AsgValidationError(
            f"Instance Id not found - No managed instance found for instance ID: {instance_id}"
        )
    return _original_terminate_instance(self, instance_id, should_decrement)


asg_models.AutoScalingBackend.terminate_instance = _terminate_instance


# --- Gap: GetConsoleOutput answers the same fixed text for every instance ------------------------
# and ignores `Latest`. A test scripts what an instance's boot output is (or that there is none
# yet), and whether its instance type supports `Latest`; unscripted instances keep moto's text.


def _get_console_output(self: Any) -> Any:
    instance_id = self._get_param("InstanceId")
    instance = self.ec2_backend.get_instance(instance_id)  # InvalidInstanceID.NotFound
    scripted = CONSOLE_OUTPUTS.get((self.current_account, instance.id))
    if scripted is None:
        return _original_get_console_output(self)
    if self._get_bool_param("Latest", False) and not scripted["latestSupported"]:
        raise EC2ClientError(
            "UnsupportedOperation",
            "This instance type does not support retrieving the latest console output.",
        )
    result: dict[str, Any] = {"InstanceId": instance.id, "Timestamp": utcnow()}
    if scripted["output"] is not None:
        result["Output"] = scripted["output"]
    return ActionResult(result)


_original_get_console_output = Ec2General.get_console_output
Ec2General.get_console_output = _get_console_output


# Checked and left as moto has them (they answer as EC2 does): DescribeLaunchTemplateVersions
# returns a version's UserData (base64, as given) and IamInstanceProfile (Arn or Name), and
# InvalidLaunchTemplateId.NotFound / .VersionNotFound; DescribeInstanceTypes returns
# VCpuInfo.DefaultVCpus and MemoryInfo.SizeInMiB, and InvalidInstanceType for an unknown type;
# GetConsoleOutput answers InvalidInstanceID.NotFound for an unknown instance.


# --- Gap: DescribeScalingActivities always answers no activities ---------------------------------
# A test scripts a group's activities (e.g. a Failed launch with Auto Scaling's status message);
# they are answered newest first, at most MaxRecords (default 100), as Auto Scaling does.


def _describe_scaling_activities(self: Any) -> Any:
    group = self._get_param("AutoScalingGroupName")
    max_records = self._get_int_param("MaxRecords", 100)
    activities = ACTIVITIES.get((self.current_account, self.region, group or ""), [])
    newest_first = sorted(activities, key=lambda a: a["StartTime"], reverse=True)
    return ActionResult({"Activities": newest_first[:max_records]})


asg_responses.AutoScalingResponse.describe_scaling_activities = _describe_scaling_activities


# --- Harness endpoints ---------------------------------------------------------------------------


# --- CloudFormation: parameter constraints --------------------------------------------------
# Gap: moto accepts any parameter value; CloudFormation refuses one that breaks the parameter's
# AllowedPattern, MinLength, MaxLength or AllowedValues with a ValidationError naming it (and
# its ConstraintDescription). The template's "a parameter naming no cluster is rejected"
# depends on it.
from moto.cloudformation import parsing as cfn_parsing
from moto.cloudformation.exceptions import ValidationError as CfnValidationError

_original_load_parameters = cfn_parsing.ResourceMap.load_parameters


def _check_parameter(name: str, slot: dict, value: Any) -> None:
    if slot.get("Type", "String") != "String" or not isinstance(value, str):
        return
    broken = None
    if "AllowedValues" in slot and value not in [str(v) for v in slot["AllowedValues"]]:
        broken = f"must be one of AllowedValues"
    elif "MinLength" in slot and len(value) < int(slot["MinLength"]):
        broken = f"must contain at least {slot['MinLength']} characters"
    elif "MaxLength" in slot and len(value) > int(slot["MaxLength"]):
        broken = f"must contain at most {slot['MaxLength']} characters"
    elif "AllowedPattern" in slot and not re.fullmatch(slot["AllowedPattern"], value):
        broken = f"must match pattern {slot['AllowedPattern']}"
    if broken:
        why = slot.get("ConstraintDescription") or broken
        raise CfnValidationError(message=f"Parameter '{name}' {broken}: {why}")


def _load_parameters_checked(self: Any) -> None:
    slots = self._template.get("Parameters", {})
    for name, value in self.input_parameters.items():
        if name in slots:
            _check_parameter(name, slots[name], value)
    _original_load_parameters(self)


cfn_parsing.ResourceMap.load_parameters = _load_parameters_checked


def _ecs(body: dict) -> Any:
    account = body.get("account", DEFAULT_ACCOUNT_ID)
    region = body.get("region", "us-east-1")
    return ecs_models.ecs_backends[account][region]


def _to_time(value: Any) -> datetime | None:
    if value is None:
        return None
    return datetime.fromtimestamp(float(value), tz=timezone.utc).replace(tzinfo=None)


def _harness_task(body: dict) -> dict:
    backend = _ecs(body)
    cluster = backend._get_cluster(body["cluster"])
    tasks, failures = _find_tasks(backend, cluster.name, [body["taskArn"]])
    if failures:
        raise KeyError(f"no task {body['taskArn']} in cluster {cluster.name}")
    task = tasks[0]
    if "lastStatus" in body:
        status = body["lastStatus"]
        task.last_status = status
        if status in LIFECYCLE:
            rank = LIFECYCLE.index(status)
            for attr, reached in TIMESTAMP_REACHED_IN.items():
                if LIFECYCLE.index(reached) > rank:
                    setattr(task, attr, None)
    for key, attr in (("desiredStatus", "desired_status"), ("healthStatus", "health_status"),
                      ("stoppedReason", "stopped_reason"), ("stopCode", "stop_code")):
        if key in body:
            setattr(task, attr, body[key])
    for key, attr in TIMESTAMPS.items():
        if key in body:
            setattr(task, attr, _to_time(body[key]))
    if "eniAttachment" in body:
        _set_eni_attachment(task, body["eniAttachment"])
    return {"taskArn": task.task_arn, "lastStatus": task.last_status}


# Gap: moto creates and attaches an awsvpc task's interface when the task is created, so every
# attachment names a networkInterfaceId. ECS creates the interface while the task is
# PROVISIONING: until then the attachment (status PRECREATED) carries only the subnetId.
ENI_DETAILS_BEFORE_CREATION = {"subnetId"}


def _set_eni_attachment(task: Any, status: str) -> None:
    for attachment in task.attachments:
        if attachment["type"] != "ElasticNetworkInterface":
            continue
        # Kept on the task, not in the attachment (which moto serializes as it is).
        if not hasattr(task, "_harness_eni_details"):
            task._harness_eni_details = list(attachment["details"])
        full = task._harness_eni_details
        attachment["status"] = status
        if status == "PRECREATED":
            attachment["details"] = [
                d for d in full if d["name"] in ENI_DETAILS_BEFORE_CREATION
            ]
        else:
            attachment["details"] = list(full)
        return
    raise KeyError(f"task {task.task_arn} has no network interface attachment")


def _harness_ghost(body: dict) -> dict:
    cluster = _ecs(body)._get_cluster(body["cluster"])
    key = (body.get("account", DEFAULT_ACCOUNT_ID), body.get("region", "us-east-1"), cluster.name)
    GHOSTS.setdefault(key, []).append(body["taskArn"])
    return {}


def _harness_container_instance(body: dict) -> dict:
    backend = _ecs(body)
    cluster = backend._get_cluster(body["cluster"])
    instance = backend.container_instances[cluster.name][body["containerInstanceArn"].split("/")[-1]]
    if "agentConnected" in body:
        instance.agent_connected = bool(body["agentConnected"])
    if "status" in body:
        instance.status = body["status"]
    return {}


def _harness_ec2_instance(body: dict) -> dict:
    ec2 = ec2_backends[body.get("account", DEFAULT_ACCOUNT_ID)][body.get("region", "us-east-1")]
    image_id = next(iter(ec2.amis))
    # The keyword arguments moto's RunInstances handler passes when the request names none.
    kwargs = {
        "instance_type": "t3.medium",
        "is_instance_type_default": False,
        "placement": None,
        "placement_hostid": None,
        "region_name": body.get("region", "us-east-1"),
        "subnet_id": None,
        "key_name": None,
        "security_group_ids": [],
        "nics": [],
        "private_ip": None,
        "associate_public_ip": None,
        "tags": {},
        "ebs_optimized": False,
        "disable_api_stop": False,
        "instance_market_options": {},
        "instance_initiated_shutdown_behavior": None,
        "launch_template": {},
        "hibernation_options": {},
        "iam_instance_profile_name": None,
        "iam_instance_profile_arn": None,
        "monitoring_state": "disabled",
        "ipv6_address_count": None,
        "metadata_options": {},
        "client_token": "harness",
    }
    reservation = ec2.run_instances(image_id, 1, None, [], **kwargs)
    return {"instanceId": reservation.instances[0].id}


def _harness_default_network(body: dict) -> dict:
    ec2 = ec2_backends[body.get("account", DEFAULT_ACCOUNT_ID)][body.get("region", "us-east-1")]
    subnet = sorted(ec2.get_default_subnets().values(), key=lambda s: s.id)[0]
    group = ec2.get_default_security_group(subnet.vpc_id)
    return {"subnetId": subnet.id, "securityGroupId": group.id}


def _harness_launch_time(body: dict) -> dict:
    ec2 = ec2_backends[body.get("account", DEFAULT_ACCOUNT_ID)][body.get("region", "us-east-1")]
    ec2.get_instance(body["instanceId"]).launch_time = _to_time(body["launchTime"])
    return {}


def _harness_service_event(body: dict) -> dict:
    backend = _ecs(body)
    cluster = backend._get_cluster(body["cluster"])
    service = backend.services[f"{cluster.name}:{body['service']}"]
    created = _to_time(body.get("createdAt")) or utcnow()
    event = {"id": f"harness-{len(service.events)}", "createdAt": created, "message": body["message"]}
    service.events.insert(0, event)
    return {}


def _harness_console_output(body: dict) -> dict:
    ec2 = ec2_backends[body.get("account", DEFAULT_ACCOUNT_ID)][body.get("region", "us-east-1")]
    instance = ec2.get_instance(body["instanceId"])
    CONSOLE_OUTPUTS[(body.get("account", DEFAULT_ACCOUNT_ID), instance.id)] = {
        "output": body["output"],
        "latestSupported": bool(body.get("latestSupported", True)),
    }
    return {}


def _harness_activity(body: dict) -> dict:
    account = body.get("account", DEFAULT_ACCOUNT_ID)
    region = body.get("region", "us-east-1")
    group = asg_models.autoscaling_backends[account][region].autoscaling_groups[body["group"]]
    activities = ACTIVITIES.setdefault((account, region, group.name), [])
    started = _to_time(body["startTime"])
    activities.append(
        {
            "ActivityId": f"harness-{group.name}-{len(activities)}",
            "AutoScalingGroupName": group.name,
            "AutoScalingGroupARN": group.arn,
            "Description": body.get("description", f"Launching a new EC2 instance in {group.name}"),
            "Cause": body.get("cause", "An instance was started in response to a difference between desired and actual capacity."),
            "StartTime": started,
            "EndTime": started,
            "StatusCode": body["statusCode"],
            "StatusMessage": body.get("statusMessage"),
            "Progress": 100,
        }
    )
    return {"activityId": activities[-1]["ActivityId"]}


def _harness_fault(body: dict) -> dict:
    scope = body.get("sessionToken") or body.get("account", DEFAULT_ACCOUNT_ID)
    FAULTS[(scope, body["operation"])] = {
        "code": body.get("code", "AccessDeniedException"),
        "status": int(body.get("status", 400)),
        "message": body.get("message", f"not authorized to perform {body['operation']}"),
    }
    return {}


def _harness_iam_role(body: dict) -> dict:
    """Creates role `name` in `account`, assumable by anyone, with an `sts:ExternalId`
    condition when `externalId` is given; answers {"arn": ...}."""
    statement: dict = {
        "Effect": "Allow",
        "Principal": {"AWS": "*"},
        "Action": "sts:AssumeRole",
    }
    if body.get("externalId"):
        statement["Condition"] = {"StringEquals": {"sts:ExternalId": body["externalId"]}}
    document = json.dumps({"Version": "2012-10-17", "Statement": [statement]})
    role = iam_models.iam_backends[body["account"]]["global"].create_role(
        body["name"], document, "/", None, "", [], None
    )
    return {"arn": role.arn}


def _harness_calls(body: dict) -> dict:
    account = body.get("account", DEFAULT_ACCOUNT_ID)
    with STOP_TASK_LOCK:
        stops = {arn: n for (acct, arn), n in STOP_TASK_CALLS.items() if acct == account}
    return {"StopTask": stops}


def _count_stop_task(environ: dict, account: str) -> None:
    """Counts a StopTask request by its task, leaving the body readable for moto."""
    length = int(environ.get("CONTENT_LENGTH") or 0)
    raw = environ["wsgi.input"].read(length)
    environ["wsgi.input"] = io.BytesIO(raw)
    try:
        task = json.loads(raw or b"{}").get("task", "")
    except ValueError:
        return
    with STOP_TASK_LOCK:
        STOP_TASK_CALLS[(account, task)] = STOP_TASK_CALLS.get((account, task), 0) + 1


def _dynamodb_fault(start_response: Any, fault: dict) -> list[bytes]:
    data = json.dumps(
        {"__type": f"com.amazonaws.dynamodb.v20120810#{fault['code']}", "message": fault["message"]}
    ).encode()
    status = fault["status"]
    reason = {400: "Bad Request", 500: "Internal Server Error"}.get(status, "Error")
    start_response(
        f"{status} {reason}",
        [("Content-Type", "application/x-amz-json-1.0"), ("Content-Length", str(len(data)))],
    )
    return [data]


def _harness_fault_clear(body: dict) -> dict:
    """Ends the fault of `operation` set with /_harness/fault, or every fault of the account
    when no operation is named: those calls answer as moto does again."""
    account = body.get("sessionToken") or body.get("account", DEFAULT_ACCOUNT_ID)
    if "operation" in body:
        FAULTS.pop((account, body["operation"]), None)
    else:
        for key in [key for key in FAULTS if key[0] == account]:
            del FAULTS[key]
    return {}


HARNESS = {
    "/_harness/ecs/task": _harness_task,
    "/_harness/ecs/ghost-task": _harness_ghost,
    "/_harness/ecs/container-instance": _harness_container_instance,
    "/_harness/ec2/instance": _harness_ec2_instance,
    "/_harness/ec2/default-network": _harness_default_network,
    "/_harness/ec2/launch-time": _harness_launch_time,
    "/_harness/ecs/service-event": _harness_service_event,
    "/_harness/ec2/console-output": _harness_console_output,
    "/_harness/autoscaling/activity": _harness_activity,
    "/_harness/fault": _harness_fault,
    "/_harness/calls": _harness_calls,
    "/_harness/iam/role": _harness_iam_role,
    "/_harness/fault/clear": _harness_fault_clear,
}

ACCESS_KEY = re.compile(r"Credential=([^/]+)/")
# The service of a SigV4-signed request: Credential=KEY/DATE/REGION/SERVICE/aws4_request.
SIGNED_SERVICE = re.compile(r"Credential=[^/]+/[^/]+/[^/]+/([^/]+)/")


def _reply(start_response: Any, status: int, body: dict, extra: list | None = None) -> list[bytes]:
    data = json.dumps(body).encode()
    reason = {200: "OK", 400: "Bad Request", 404: "Not Found"}.get(status, "Error")
    headers = [("Content-Type", "application/x-amz-json-1.1"), ("Content-Length", str(len(data)))]
    start_response(f"{status} {reason}", headers + (extra or []))
    return [data]


def _query_action(environ: dict) -> str | None:
    """The Action of a query-protocol (EC2) request; leaves the body readable for moto."""
    if not environ.get("CONTENT_TYPE", "").startswith("application/x-www-form-urlencoded"):
        return None
    length = int(environ.get("CONTENT_LENGTH") or 0)
    data = environ["wsgi.input"].read(length)
    environ["wsgi.input"] = io.BytesIO(data)
    return parse_qs(data.decode(errors="replace")).get("Action", [None])[0]


def _ec2_error(start_response: Any, fault: dict) -> list[bytes]:
    """An error in EC2's query-protocol format."""
    data = (
        '<?xml version="1.0" encoding="UTF-8"?>\n<Response><Errors><Error>'
        f"<Code>{escape(fault['code'])}</Code><Message>{escape(fault['message'])}</Message>"
        "</Error></Errors><RequestID>harness-fault</RequestID></Response>"
    ).encode()
    headers = [("Content-Type", "text/xml;charset=UTF-8"), ("Content-Length", str(len(data)))]
    start_response(f"{fault['status']} Error", headers)
    return [data]


def _query_error(start_response: Any, fault: dict) -> list[bytes]:
    """An error in the wrapped query-protocol format (Auto Scaling)."""
    data = (
        '<?xml version="1.0" encoding="UTF-8"?>\n<ErrorResponse><Error><Type>Sender</Type>'
        f"<Code>{escape(fault['code'])}</Code><Message>{escape(fault['message'])}</Message>"
        "</Error><RequestId>harness-fault</RequestId></ErrorResponse>"
    ).encode()
    headers = [("Content-Type", "text/xml"), ("Content-Length", str(len(data)))]
    start_response(f"{fault['status']} Error", headers)
    return [data]


# --- Gap: moto's SQS never refuses a caller -------------------------------------------------
# moto enforces no IAM by default, so a role that may not read the queue cannot be shown. A
# harness fault on an SQS operation (e.g. "GetQueueAttributes") answers it as SQS's JSON
# protocol does: `__type` and the query-compatible `x-amzn-query-error` header.


def _sqs_fault(start_response: Any, fault: dict) -> list[bytes]:
    return _reply(
        start_response,
        fault["status"],
        {"__type": f"com.amazonaws.sqs#{fault['code']}", "message": fault["message"]},
        [("x-amzn-query-error", f"{fault['code']};Sender")],
    )


def harness_app(inner: Any) -> Any:
    def app(environ: dict, start_response: Any) -> Any:
        path = environ.get("PATH_INFO", "")
        if path in HARNESS:
            length = int(environ.get("CONTENT_LENGTH") or 0)
            body = json.loads(environ["wsgi.input"].read(length) or b"{}")
            try:
                return _reply(start_response, 200, HARNESS[path](body))
            except Exception as err:  # the harness caller wants to see what went wrong
                return _reply(start_response, 400, {"error": repr(err)})
        target = environ.get("HTTP_X_AMZ_TARGET", "")
        match = ACCESS_KEY.search(environ.get("HTTP_AUTHORIZATION", ""))
        account = _account_from_access_key(match.group(1) if match else "")
        if FAULTS:
            token = environ.get("HTTP_X_AMZ_SECURITY_TOKEN", "")

            def fault_of(operation: str) -> dict | None:
                by_token = FAULTS.get((token, operation)) if token else None
                return by_token or FAULTS.get((account, operation))

            if target.startswith(ECS_TARGET_PREFIX):
                fault = fault_of(target[len(ECS_TARGET_PREFIX):])
                if fault:
                    return _reply(
                        start_response,
                        fault["status"],
                        {"__type": fault["code"], "message": fault["message"]},
                        [("x-amzn-ErrorType", fault["code"])],
                    )
            elif target.startswith(SQS_TARGET_PREFIX):
                fault = fault_of(target[len(SQS_TARGET_PREFIX):])
                if fault:
                    return _sqs_fault(start_response, fault)
            elif target.startswith(DYNAMODB_TARGET_PREFIX):
                fault = fault_of(target[len(DYNAMODB_TARGET_PREFIX):])
                if fault:
                    return _dynamodb_fault(start_response, fault)
            elif not target:
                fault = fault_of(_query_action(environ) or "")
                if fault:
                    service = SIGNED_SERVICE.search(environ.get("HTTP_AUTHORIZATION", ""))
                    if service and service.group(1) == "autoscaling":
                        return _query_error(start_response, fault)
                    return _ec2_error(start_response, fault)
        if target == ECS_TARGET_PREFIX + "StopTask":
            _count_stop_task(environ, account)
        if target.startswith(DYNAMODB_TARGET_PREFIX):
            with DYNAMODB_LOCK:
                return list(inner(environ, start_response))
        return inner(environ, start_response)

    return app


def _exit_when_stdin_closes() -> None:
    sys.stdin.buffer.read()
    # The parent is gone (or closed our stdin to stop us): leave without cleanup.
    import os

    os._exit(0)


class QuietRequestHandler(MotoRequestHandler):
    """Logs nothing per request: test output stays readable."""

    def log_request(self, *args: Any, **kwargs: Any) -> None:
        pass


def main() -> None:
    app = harness_app(DomainDispatcherApplication(create_backend_app))
    server = make_server(
        "127.0.0.1", 0, app, threaded=True, request_handler=QuietRequestHandler
    )
    threading.Thread(target=_exit_when_stdin_closes, daemon=True).start()
    print(f"PORT {server.server_port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
