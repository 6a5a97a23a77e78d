"""Runs the authentication cases with boto3 against a Nimbus node and prints
one JSON object: for each case, its HTTP status, Lambda error code and
message, or its result. The Go test (cmd/nimbus/clients_test.go) judges.

Usage: python3 boto3_auth.py SPEC.json, where SPEC has Endpoint, Zip (a
path), Prefix (of the functions this client creates), and keys Admin,
Invoker, Developer (each AccessKeyId, SecretAccessKey).
"""
import datetime
import json
import sys
import urllib.error
import urllib.request

import boto3
import botocore.auth
from botocore import UNSIGNED
from botocore.config import Config
from botocore.exceptions import ClientError

spec = json.load(open(sys.argv[1]))
REGION = "us-east-1"
report = {}


def client(key=None, unsigned=False):
    cfg = Config(retries={"max_attempts": 1}, signature_version=UNSIGNED if unsigned else None)
    kw = {}
    if key:
        kw = {"aws_access_key_id": key["AccessKeyId"], "aws_secret_access_key": key["SecretAccessKey"]}
    elif not unsigned:
        raise ValueError("no key")
    return boto3.session.Session().client("lambda", endpoint_url=spec["Endpoint"], region_name=REGION, config=cfg, **kw)


def case(name, fn):
    try:
        report[name] = {"Status": 200, "Result": fn()}
    except ClientError as e:
        err = e.response.get("Error", {})
        report[name] = {"Status": e.response["ResponseMetadata"]["HTTPStatusCode"],
                        "Code": err.get("Code", ""), "Message": err.get("Message", "")}
    except Exception as e:  # a client-side failure: the test shows it
        report[name] = {"Status": -1, "Code": type(e).__name__, "Message": str(e)}


admin, inv, dev = client(spec["Admin"]), client(spec["Invoker"]), client(spec["Developer"])
p = spec["Prefix"]
code = open(spec["Zip"], "rb").read()
arn = "arn:aws:lambda:us-east-1:000000000000:function:" + p + "one"

case("create", lambda: admin.create_function(FunctionName=p + "one", Runtime="python3.11", Role="r",
                                             Handler="app.handler", Code={"ZipFile": code})["CodeSize"])
case("list", lambda: len(admin.list_functions(MaxItems=1)["Functions"]))
case("list_marker", lambda: len(admin.list_functions(
    MaxItems=1, Marker=admin.list_functions(MaxItems=1)["NextMarker"])["Functions"]))
case("get_arn", lambda: admin.get_function(FunctionName=arn, Qualifier="$LATEST")["Configuration"]["FunctionName"])
payload = json.dumps({"b": "\u0000\u00ff\U0001F600 bin"}).encode()
case("invoke_binary", lambda: json.loads(admin.invoke(FunctionName=arn + ":$LATEST", Payload=payload)["Payload"].read()))

case("anonymous", lambda: client(unsigned=True).list_functions())
case("wrong_secret", lambda: client({"AccessKeyId": spec["Admin"]["AccessKeyId"], "SecretAccessKey": "wrong"}).list_functions())
case("unknown_key", lambda: client({"AccessKeyId": "AKIANOSUCHKEY0000000", "SecretAccessKey": "x"}).list_functions())


_real_datetime = datetime.datetime


class _Skewed(_real_datetime):
    """A clock 10 minutes slow, for botocore's signer."""

    @classmethod
    def utcnow(cls):
        return _real_datetime.utcnow() - datetime.timedelta(minutes=10)

    @classmethod
    def now(cls, tz=None):
        return _real_datetime.now(tz) - datetime.timedelta(minutes=10)


def skewed():
    botocore.auth.datetime.datetime = _Skewed
    try:
        return admin.list_functions()
    finally:
        botocore.auth.datetime.datetime = _real_datetime


case("skewed", skewed)

case("invoker_invoke", lambda: inv.invoke(FunctionName=p + "one", Payload=b"{}")["StatusCode"])
case("invoker_create", lambda: inv.create_function(FunctionName=p + "inv", Runtime="python3.11", Role="r",
                                                    Handler="app.handler", Code={"ZipFile": code}))
case("invoker_update", lambda: inv.update_function_configuration(FunctionName=p + "one", MemorySize=256))
case("invoker_delete", lambda: inv.delete_function(FunctionName=p + "one"))

b = spec["Other"]
case("dev_get_other", lambda: dev.get_function(FunctionName=b))
case("dev_invoke_other", lambda: dev.invoke(FunctionName=b, Payload=b"{}"))
case("dev_update_other", lambda: dev.update_function_configuration(FunctionName=b, MemorySize=256))
case("dev_delete_other", lambda: dev.delete_function(FunctionName=b))
case("dev_url_other", lambda: dev.create_function_url_config(FunctionName=b, AuthType="NONE"))
case("dev_invoke_own", lambda: dev.invoke(FunctionName=p + "one", Payload=b"{}")["StatusCode"])
case("dev_list", lambda: sorted(f["FunctionName"] for f in dev.list_functions()["Functions"]))


def presigned():
    url = admin.generate_presigned_url("get_function", Params={"FunctionName": p + "one"}, ExpiresIn=60)
    try:
        with urllib.request.urlopen(url) as r:
            return json.loads(r.read())["Configuration"]["FunctionName"]
    except urllib.error.HTTPError as e:
        raise ClientError({"Error": {"Code": e.headers.get("X-Amzn-ErrorType", "").split(":")[0],
                                     "Message": e.read().decode()},
                           "ResponseMetadata": {"HTTPStatusCode": e.code}}, "presigned GetFunction")


case("presigned", presigned)
case("delete", lambda: admin.delete_function(FunctionName=p + "one")["ResponseMetadata"]["HTTPStatusCode"])

json.dump(report, sys.stdout, indent=1, sort_keys=True)
