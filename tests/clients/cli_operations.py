"""Every SQS and SNS operation of the AWS CLI's own botocore models, called through the `aws`
command against a running Sluice (`--cli-input-json` with a value of each required member's
type): each must reach an operation Sluice serves (an answer, or an error of the operation's
own), except SNS's SMS and mobile-push operations, which must answer InvalidAction.

Usage: cli_operations.py <aws command> <endpoint>. Needs AWS_ACCESS_KEY_ID,
AWS_SECRET_ACCESS_KEY and AWS_DEFAULT_REGION. Prints "cli-operations: N passed, M failed"."""
import json
import re
import subprocess
import sys

import botocore.session

aws, endpoint = sys.argv[1], sys.argv[2]
passed, failed = 0, 0
SNS_OUT_OF_SCOPE = {"CheckIfPhoneNumberIsOptedOut", "CreatePlatformApplication", "CreatePlatformEndpoint",
                    "CreateSMSSandboxPhoneNumber", "DeleteEndpoint", "DeletePlatformApplication",
                    "DeleteSMSSandboxPhoneNumber", "GetEndpointAttributes", "GetPlatformApplicationAttributes",
                    "GetSMSAttributes", "GetSMSSandboxAccountStatus", "ListEndpointsByPlatformApplication",
                    "ListOriginationNumbers", "ListPhoneNumbersOptedOut", "ListPlatformApplications",
                    "ListSMSSandboxPhoneNumbers", "OptInPhoneNumber", "SetEndpointAttributes",
                    "SetPlatformApplicationAttributes", "SetSMSAttributes", "VerifySMSSandboxPhoneNumber"}


def check(name, ok, detail=""):
    global passed, failed
    if ok:
        passed += 1
    else:
        failed += 1
        print(f"cli-operations {name}: {detail}", flush=True)


def junk(shape):
    """A value of `shape`'s type, as long as its minimum asks."""
    kind = shape.type_name
    if kind == "string":
        return "x" * max(1, shape.metadata.get("min", 1))
    if kind in ("integer", "long"):
        return max(1, shape.metadata.get("min", 1))
    if kind == "boolean":
        return False
    if kind == "list":
        return [junk(shape.member)]
    if kind == "map":
        return {"x": junk(shape.value)}
    if kind == "structure":
        return {m: junk(shape.members[m]) for m in shape.required_members}
    return "eA=="


def kebab(name):
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "-", name).lower()


session = botocore.session.get_session()
for service in ("sqs", "sns"):
    model = session.get_service_model(service)
    for op_name in model.operation_names:
        op = model.operation_model(op_name)
        params = {}
        for member in (op.input_shape.required_members if op.input_shape else []):
            shape = op.input_shape.members[member]
            params[member] = f"{endpoint}/000000000000/none" if member == "QueueUrl" else junk(shape)
        command = [aws, "--endpoint-url", endpoint, service, kebab(op_name), "--cli-input-json", json.dumps(params)]
        run = subprocess.run(command, capture_output=True, text=True, timeout=60)
        code = None
        if run.returncode != 0:
            m = re.search(r"An error occurred \(([^)]+)\)", run.stderr)
            code = m.group(1) if m else f"no service error: {run.stderr.strip()[:200]}"
        name = f"{service} {kebab(op_name)}"
        if service == "sns" and op_name in SNS_OUT_OF_SCOPE:
            check(f"{name} answers a clear error", code == "InvalidAction", code)
        else:
            check(f"{name} served", code is None or not (code in ("InvalidAction", "UnknownOperationException")
                                                          or code.startswith("no service error")), code)

print(f"cli-operations: {passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
