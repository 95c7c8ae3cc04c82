"""CloudFormation helpers for the deploy tests (tests/integration/{deploy_template,cfn_moto}.rs).

- `template-json PATH`: the template as JSON, read by cfn-lint's own loader (it understands the
  short-form tags `!Sub`, `!Ref`, ... and turns them into `Fn::Sub`, `Ref`, ...).
- `create ENDPOINT ACCOUNT PATH STACK PARAMETERS_JSON`: creates the stack on moto (in the test's
  account: access key `MOTOACCT<account>`), then prints one JSON object: `status`, `error` (the
  ValidationError message when the stack was refused), `resources` (logical id -> type and
  physical id), `outputs`, `taskRolePolicy` (the TaskRole's inline policy, as IAM holds it),
  and for every role with an inline policy `ecs-reconciler`, `rolePolicies` and `roleTrust`
  (logical id -> that policy, and the role's trust policy), and `taskEnvironment` (the
  TaskDefinition's first container's environment, name -> value).
"""

from __future__ import annotations

import ast
import json
import sys
from typing import Any


def template_json(path: str) -> None:
    from cfnlint.decode import decode

    template, matches = decode(path)
    if matches:
        sys.exit(f"{path}: {matches[0]}")
    json.dump(template, sys.stdout, default=str)


def create(endpoint: str, account: str, path: str, stack: str, parameters: str) -> None:
    import boto3
    from botocore.exceptions import ClientError

    session = boto3.session.Session(
        aws_access_key_id=f"MOTOACCT{account}",
        aws_secret_access_key="moto-secret",
        region_name="us-east-1",
    )
    cfn = session.client("cloudformation", endpoint_url=endpoint)
    params = [
        {"ParameterKey": k, "ParameterValue": v} for k, v in json.loads(parameters).items()
    ]
    with open(path, encoding="utf-8") as f:
        body = f.read()
    try:
        cfn.create_stack(
            StackName=stack,
            TemplateBody=body,
            Parameters=params,
            Capabilities=["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM"],
        )
    except ClientError as err:
        json.dump({"status": "REFUSED", "error": err.response["Error"]["Message"]}, sys.stdout)
        return
    described = cfn.describe_stacks(StackName=stack)["Stacks"][0]
    resources: dict[str, Any] = {}
    for r in cfn.list_stack_resources(StackName=stack)["StackResourceSummaries"]:
        resources[r["LogicalResourceId"]] = {
            "type": r["ResourceType"],
            "physical": r.get("PhysicalResourceId"),
        }
    out: dict[str, Any] = {
        "status": described["StackStatus"],
        "resources": resources,
        "outputs": {o["OutputKey"]: o["OutputValue"] for o in described.get("Outputs", [])},
    }
    iam = session.client("iam", endpoint_url=endpoint)
    policies: dict[str, Any] = {}
    trusts: dict[str, Any] = {}
    for logical, r in resources.items():
        if r["type"] != "AWS::IAM::Role" or not r["physical"]:
            continue
        name = r["physical"].rsplit("/", 1)[-1]
        if "ecs-reconciler" not in iam.list_role_policies(RoleName=name)["PolicyNames"]:
            continue
        policy = iam.get_role_policy(RoleName=name, PolicyName="ecs-reconciler")
        policies[logical] = _document(policy["PolicyDocument"])
        trust = iam.get_role(RoleName=name)["Role"]["AssumeRolePolicyDocument"]
        trusts[logical] = _document(trust)
    out["rolePolicies"] = policies
    out["roleTrust"] = trusts
    if "TaskRole" in policies:
        out["taskRolePolicy"] = policies["TaskRole"]
    task = resources.get("TaskDefinition", {}).get("physical")
    if task:
        ecs = session.client("ecs", endpoint_url=endpoint)
        container = ecs.describe_task_definition(taskDefinition=task)["taskDefinition"][
            "containerDefinitions"
        ][0]
        # Gap: moto keeps an `AWS::NoValue` in a list as null; CloudFormation drops it.
        out["taskEnvironment"] = {
            e["name"]: e["value"] for e in container.get("environment", []) if e
        }
    json.dump(out, sys.stdout, default=str)


def _document(document: Any) -> Any:
    # Gap: moto answers with the Python repr of the document, not (URL-encoded) JSON.
    if not isinstance(document, str):
        return document
    try:
        return json.loads(document)
    except ValueError:
        return ast.literal_eval(document)


def main() -> None:
    command, *args = sys.argv[1:]
    if command == "template-json":
        template_json(*args)
    elif command == "create":
        create(*args)
    else:
        sys.exit(f"unknown command {command}")


if __name__ == "__main__":
    main()
