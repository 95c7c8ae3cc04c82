"""CloudFormation helpers for the deploy tests (tests/integration/{deploy_template,cfn_moto}.rs).

- `template-json PATH`: the template as JSON, read by cfn-lint's own loader (it understands the
  short-form tags `!Sub`, `!Ref`, ... and turns them into `Fn::Sub`, `Ref`, ...).
- `create ENDPOINT ACCOUNT PATH STACK PARAMETERS_JSON`: creates the stack on moto (in the test's
  account: access key `MOTOACCT<account>`), then prints one JSON object: `status`, `error` (the
  ValidationError message when the stack was refused), `resources` (logical id -> type and
  physical id), `outputs`, and `taskRolePolicy` (the TaskRole's inline policy, as IAM holds it).
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
            Capabilities=["CAPABILITY_IAM"],
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
    role = resources.get("TaskRole", {}).get("physical")
    if role:
        iam = session.client("iam", endpoint_url=endpoint)
        name = role.rsplit("/", 1)[-1]
        policy = iam.get_role_policy(RoleName=name, PolicyName="ecs-reconciler")
        document = policy["PolicyDocument"]
        # Gap: moto answers with the Python repr of the document, not (URL-encoded) JSON.
        out["taskRolePolicy"] = (
            ast.literal_eval(document) if isinstance(document, str) else document
        )
    json.dump(out, sys.stdout, default=str)


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
