"""Calls InvokeWithResponseStream with boto3 against a Nimbus node and
prints one JSON object: for each case, the chunks read, InvokeComplete's
fields and the answer's headers, or the error code. The Go test
(internal/api/functions_stream_test.go) makes the functions and judges.

Usage: python3 boto3_stream.py ENDPOINT
"""
import base64
import json
import sys

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

lam = boto3.client("lambda", endpoint_url=sys.argv[1], region_name="us-east-1",
                   config=Config(retries={"max_attempts": 1}))
report = {}


def stream(name, on_chunk=None, **kw):
    try:
        out = lam.invoke_with_response_stream(FunctionName=name, **kw)
    except ClientError as e:
        return {"Err": e.response["Error"]["Code"]}
    got = {"Chunks": [], "ExecutedVersion": out.get("ExecutedVersion", ""),
           "ContentType": out.get("ResponseStreamContentType", "")}
    for ev in out["EventStream"]:
        if "PayloadChunk" in ev:
            chunk = ev["PayloadChunk"]["Payload"].decode()
            got["Chunks"].append(chunk)
            if on_chunk:
                on_chunk(chunk)
        elif "InvokeComplete" in ev:
            done = ev["InvokeComplete"]
            got["ErrorCode"] = done.get("ErrorCode", "")
            got["ErrorDetails"] = done.get("ErrorDetails", "")
            got["LogTail"] = base64.b64decode(done.get("LogResult", "")).decode()
    return got


def release(chunk):
    if chunk == "first\n":
        lam.invoke(FunctionName="web", Payload=b'{"release": true}')


report["buffered"] = stream("py", Payload=b'{"k": "v"}', LogType="Tail")
report["error"] = stream("pyfail")
report["http"] = stream("web", on_chunk=release, Payload=b'{"wait": true}')
report["node"] = stream("node-count", Payload=b'{"n": 3}')
report["unknown"] = stream("no-such-function")
json.dump(report, sys.stdout)
