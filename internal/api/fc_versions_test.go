package api_test

import (
	"encoding/base64"
	"testing"

	"github.com/nimbus-serverless/nimbus/internal/node/nodetest"
)

type fcVersionOut struct{ VersionID, Description, CreatedTime, LastModifiedTime string }

type fcAliasOut struct {
	AliasName, VersionID, Description, CreatedTime, LastModifiedTime string
	AdditionalVersionWeight                                          map[string]float64
}

// TestFCVersionsAndAliases: PublishFunctionVersion, ListFunctionVersions
// (both directions, pages), aliases with weights, InvokeFunction through an
// alias and a version, GetFunction of a version, and the errors.
func TestFCVersionsAndAliases(t *testing.T) {
	n := nodetest.Start(t, nil)
	fc := newFCAPI(t, n)
	c := client(n)
	zip := func(v string) string {
		return base64.StdEncoding.EncodeToString(nodetest.Zip(t, map[string]string{"app.py": "def handler(event, context):\n    return '" + v + "'\n"}))
	}
	fc.do("POST", "/functions", `{"functionName":"ver","runtime":"python3.11","handler":"app.handler","code":{"zipFile":"`+zip("one")+`"}}`, 200)
	waitActive(t, c, "ver")
	var v1, v2 fcVersionOut
	fc.json("POST", "/functions/ver/versions", `{"description":"first"}`, 200, &v1)
	if v1.VersionID != "1" || v1.Description != "first" || v1.CreatedTime == "" {
		t.Errorf("PublishFunctionVersion = %+v", v1)
	}
	fc.do("PUT", "/functions/ver", `{"code":{"zipFile":"`+zip("two")+`"}}`, 200)
	waitActive(t, c, "ver")
	fc.json("POST", "/functions/ver/versions", "", 200, &v2)
	if v2.VersionID != "2" {
		t.Errorf("second PublishFunctionVersion = %+v", v2)
	}
	var list struct {
		Versions  []fcVersionOut
		Direction string
		NextToken string
	}
	fc.json("GET", "/functions/ver/versions?limit=1", "", 200, &list)
	if len(list.Versions) != 1 || list.Versions[0].VersionID != "2" || list.Direction != "BACKWARD" || list.NextToken != "1" {
		t.Errorf("ListFunctionVersions page 1 = %+v", list)
	}
	list.NextToken = ""
	fc.json("GET", "/functions/ver/versions?limit=1&nextToken=1", "", 200, &list)
	if len(list.Versions) != 1 || list.Versions[0].VersionID != "1" || list.NextToken != "" {
		t.Errorf("ListFunctionVersions page 2 = %+v", list)
	}
	fc.json("GET", "/functions/ver/versions?direction=FORWARD", "", 200, &list)
	if len(list.Versions) != 2 || list.Versions[0].VersionID != "1" || list.Direction != "FORWARD" {
		t.Errorf("ListFunctionVersions FORWARD = %+v", list)
	}

	var a fcAliasOut
	fc.json("POST", "/functions/ver/aliases", `{"aliasName":"live","versionId":"1","description":"prod","additionalVersionWeight":{"2":0}}`, 200, &a)
	if a.AliasName != "live" || a.VersionID != "1" || a.Description != "prod" || a.AdditionalVersionWeight["2"] != 0 || a.CreatedTime == "" {
		t.Errorf("CreateAlias = %+v", a)
	}
	if out := fc.do("POST", "/functions/ver/invocations?qualifier=live", "{}", 200); string(out) != "one" {
		t.Errorf("InvokeFunction through live = %s", out)
	}
	if out := fc.do("POST", "/functions/ver/invocations?qualifier=2", "{}", 200); string(out) != "two" {
		t.Errorf("InvokeFunction of version 2 = %s", out)
	}
	a = fcAliasOut{}
	fc.json("PUT", "/functions/ver/aliases/live", `{"versionId":"2","additionalVersionWeight":{}}`, 200, &a)
	if a.VersionID != "2" || len(a.AdditionalVersionWeight) != 0 || a.Description != "prod" {
		t.Errorf("UpdateAlias = %+v", a)
	}
	if out := fc.do("POST", "/functions/ver/invocations?qualifier=live", "{}", 200); string(out) != "two" {
		t.Errorf("InvokeFunction through live after UpdateAlias = %s", out)
	}
	fc.json("GET", "/functions/ver/aliases/live", "", 200, &a)
	if a.VersionID != "2" {
		t.Errorf("GetAlias = %+v", a)
	}
	fc.do("POST", "/functions/ver/aliases", `{"aliasName":"beta","versionId":"1"}`, 200)
	var al struct {
		Aliases   []fcAliasOut
		NextToken string
	}
	fc.json("GET", "/functions/ver/aliases?limit=1", "", 200, &al)
	if len(al.Aliases) != 1 || al.Aliases[0].AliasName != "beta" || al.NextToken != "live" {
		t.Errorf("ListAliases = %+v", al)
	}
	var got struct{ FunctionName, Description string }
	fc.json("GET", "/functions/ver?qualifier=beta", "", 200, &got)
	if got.Description != "first" {
		t.Errorf("GetFunction of alias beta = %+v", got)
	}

	fc.fails("POST", "/functions/ver/aliases", `{"aliasName":"live","versionId":"1"}`, 409, "AliasAlreadyExists", "live")
	fc.fails("POST", "/functions/ver/aliases", `{"aliasName":"x","versionId":"9"}`, 404, "VersionNotFound", "'9'")
	fc.fails("POST", "/functions/ver/aliases", `{"aliasName":"x","versionId":"1","additionalVersionWeight":{"2":1.5}}`, 400, "InvalidArgument", "additionalVersionWeights")
	fc.fails("POST", "/functions/ver/aliases", `{"aliasName":"7","versionId":"1"}`, 400, "InvalidArgument", "aliasName")
	fc.fails("POST", "/functions/ver/aliases", `{"versionId":"1"}`, 400, "InvalidArgument", "aliasName is required")
	fc.fails("GET", "/functions/ver/aliases/nope", "", 404, "AliasNotFound", "nope")
	fc.fails("PUT", "/functions/ver/aliases/nope", `{"versionId":"1"}`, 404, "AliasNotFound", "nope")
	fc.fails("GET", "/functions/ver/versions?direction=UP", "", 400, "InvalidArgument", "direction")
	fc.fails("DELETE", "/functions/ver/versions/1", "", 409, "ResourceConflict", "beta")
	fc.fails("DELETE", "/functions/ver/versions/9", "", 404, "VersionNotFound", "'9'")
	fc.fails("POST", "/functions/nope/versions", "", 404, "FunctionNotFound", "nope")

	fc.do("DELETE", "/functions/ver/aliases/beta", "", 204)
	fc.fails("DELETE", "/functions/ver/aliases/beta", "", 404, "AliasNotFound", "beta")
	fc.do("DELETE", "/functions/ver/versions/1", "", 204)
	fc.json("GET", "/functions/ver/versions", "", 200, &list)
	if len(list.Versions) != 1 || list.Versions[0].VersionID != "2" {
		t.Errorf("ListFunctionVersions after a delete = %+v", list)
	}
	fc.fails("POST", "/functions/ver/invocations?qualifier=1", "{}", 404, "VersionNotFound", "'1'")
}
