package api_test

import (
	"testing"
	"time"

	"github.com/nimbus-serverless/nimbus/internal/node/nodetest"
)

type fcProvision struct {
	FunctionArn       string
	Target            int
	DefaultTarget     int
	Current           int
	AlwaysAllocateCPU bool
}

// TestFCProvisionConfig: Put/Get/Delete/ListProvisionConfig(s) set the
// node's warm minimum of the function and of an alias, the instances come
// up, and bad inputs are refused by name.
func TestFCProvisionConfig(t *testing.T) {
	n := nodetest.Start(t, nil)
	c := client(n)
	fc := newFCAPI(t, n)
	publishWithAlias(t, c, "pc", "live")
	fc.fails("GET", "/functions/pc/provision-config", "", 404, "ProvisionConfigNotExist", "no provision config")
	var got fcProvision
	fc.json("PUT", "/functions/pc/provision-config", `{"target":2}`, 200, &got)
	if got.Target != 2 || got.DefaultTarget != 2 || got.AlwaysAllocateCPU || got.FunctionArn != "acs:fc:us-east-1:000000000000:functions/pc" {
		t.Errorf("PutProvisionConfig = %+v", got)
	}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		fc.json("GET", "/functions/pc/provision-config?qualifier=LATEST", "", 200, &got)
		if got.Current == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the warm instances never came: %+v", got)
		}
	}
	fc.json("PUT", "/functions/pc/provision-config?qualifier=live", `{"defaultTarget":1,"alwaysAllocateCPU":false}`, 200, &got)
	if got.Target != 1 || got.FunctionArn != "acs:fc:us-east-1:000000000000:functions/pc/live" {
		t.Errorf("PutProvisionConfig of an alias = %+v", got)
	}
	var list struct {
		ProvisionConfigs []fcProvision
		NextToken        string
	}
	fc.json("GET", "/provision-configs?functionName=pc&limit=1", "", 200, &list)
	if len(list.ProvisionConfigs) != 1 || list.ProvisionConfigs[0].Target != 2 || list.NextToken == "" {
		t.Fatalf("ListProvisionConfigs page 1 = %+v", list)
	}
	token := list.NextToken
	list.NextToken = ""
	fc.json("GET", "/provision-configs?functionName=pc&limit=1&nextToken="+token, "", 200, &list)
	if len(list.ProvisionConfigs) != 1 || list.ProvisionConfigs[0].Target != 1 || list.NextToken != "" {
		t.Fatalf("ListProvisionConfigs page 2 = %+v", list)
	}

	for _, b := range []struct{ query, body, code, msg string }{
		{"", `{}`, "InvalidArgument", "target is required"},
		{"", `{"target":-1}`, "InvalidArgument", "target -1"},
		{"", `{"target":1,"defaultTarget":2}`, "InvalidArgument", "differ"},
		{"", `{"target":1,"alwaysAllocateCPU":true}`, "InvalidArgument", "alwaysAllocateCPU"},
		{"", `{"target":1,"scheduledActions":[{"name":"a"}]}`, "InvalidArgument", "scheduledActions"},
		{"", `{"target":1,"targetTrackingPolicies":[{"name":"a"}]}`, "InvalidArgument", "targetTrackingPolicies"},
		{"", `{"target":1,"bogus":1}`, "InvalidArgument", "bogus"},
	} {
		fc.fails("PUT", "/functions/pc/provision-config"+b.query, b.body, 400, b.code, b.msg)
	}
	fc.fails("PUT", "/functions/pc/provision-config?qualifier=9", `{"target":1}`, 404, "VersionNotFound", "'9'")
	fc.fails("PUT", "/functions/pc/provision-config?qualifier=nope", `{"target":1}`, 404, "AliasNotFound", "'nope'")
	fc.fails("PUT", "/functions/nope/provision-config", `{"target":1}`, 404, "FunctionNotFound", "nope")
	fc.do("PUT", "/functions/pc/concurrency", `{"reservedConcurrency":3}`, 200)
	fc.fails("PUT", "/functions/pc/provision-config", `{"target":4}`, 400, "InvalidArgument", "reserved concurrency")

	fc.do("DELETE", "/functions/pc/provision-config?qualifier=live", "", 204)
	fc.fails("DELETE", "/functions/pc/provision-config?qualifier=live", "", 404, "ProvisionConfigNotExist", "live")
	fc.json("PUT", "/functions/pc/provision-config", `{"target":0}`, 200, &got)
	if got.Target != 0 {
		t.Errorf("target 0 = %+v", got)
	}
	fc.fails("GET", "/functions/pc/provision-config", "", 404, "ProvisionConfigNotExist", "LATEST")
	fc.json("GET", "/provision-configs?functionName=pc", "", 200, &list)
	if len(list.ProvisionConfigs) != 0 {
		t.Errorf("ListProvisionConfigs after deletes = %+v", list)
	}
}
