package api_test

import (
	"net/url"
	"testing"
	"time"

	"github.com/nimbus-serverless/nimbus/internal/node/nodetest"
)

// TestFCListInstances: the instances a provision config keeps warm are
// listed, of LATEST and of an alias's version, filtered and refused as
// documented.
func TestFCListInstances(t *testing.T) {
	n := nodetest.Start(t, nil)
	fc := newFCAPI(t, n)
	c := client(n)
	publishWithAlias(t, c, "inst", "live")
	type list struct {
		Instances []struct{ InstanceID, VersionID, Qualifier, Status string }
		RequestID string
	}
	var l list
	fc.json("GET", "/functions/inst/instances", "", 200, &l)
	if len(l.Instances) != 0 || l.RequestID == "" {
		t.Fatalf("ListInstances of a cold function = %+v", l)
	}
	fc.do("PUT", "/functions/inst/provision-config", `{"target":2}`, 200)
	fc.do("PUT", "/functions/inst/provision-config?qualifier=live", `{"target":1}`, 200)
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		l = list{}
		fc.json("GET", "/functions/inst/instances", "", 200, &l)
		if len(l.Instances) == 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("ListInstances never showed 3 instances: %+v", l)
		}
	}
	versions := map[string]int{}
	for _, i := range l.Instances {
		versions[i.VersionID]++
		if i.InstanceID == "" || i.Status != "Running" {
			t.Errorf("instance %+v", i)
		}
	}
	if versions["LATEST"] != 2 || versions["1"] != 1 {
		t.Errorf("ListInstances versions = %v, want 2 of LATEST and 1 of version 1", versions)
	}
	l = list{}
	fc.json("GET", "/functions/inst/instances?qualifier=live", "", 200, &l)
	if len(l.Instances) != 1 || l.Instances[0].VersionID != "1" || l.Instances[0].Qualifier != "live" {
		t.Errorf("ListInstances of live = %+v", l)
	}
	id := l.Instances[0].InstanceID
	l = list{}
	fc.json("GET", "/functions/inst/instances?qualifier=LATEST&limit=1", "", 200, &l)
	if len(l.Instances) != 1 || l.Instances[0].VersionID != "LATEST" {
		t.Errorf("ListInstances of LATEST, limit 1 = %+v", l)
	}
	l = list{}
	fc.json("GET", "/functions/inst/instances?instanceIds="+url.QueryEscape(`["`+id+`"]`), "", 200, &l)
	if len(l.Instances) != 1 || l.Instances[0].InstanceID != id {
		t.Errorf("ListInstances of %s = %+v", id, l)
	}
	l = list{}
	fc.json("GET", "/functions/inst/instances?instanceStatus="+url.QueryEscape(`["Stopped"]`), "", 200, &l)
	if len(l.Instances) != 0 {
		t.Errorf("ListInstances of Stopped = %+v", l)
	}
	fc.fails("GET", "/functions/inst/instances?startTimeMs=1", "", 400, "InvalidArgument", "startTimeMs")
	fc.fails("GET", "/functions/inst/instances?instanceIds=x", "", 400, "InvalidArgument", "instanceIds")
	fc.fails("GET", "/functions/inst/instances?qualifier=nope", "", 404, "AliasNotFound", "nope")
	fc.fails("GET", "/functions/nope/instances", "", 404, "FunctionNotFound", "nope")

	// Disable/EnableFunctionInvocation: no switch; reserved concurrency 0
	// is what refuses invocations, as the 501 says.
	fc.fails("POST", "/functions/inst/invoke/disable", "{}", 501, "NotImplemented", "reservedConcurrency 0")
	fc.do("DELETE", "/functions/inst/provision-config", "", 204)
	fc.do("DELETE", "/functions/inst/provision-config?qualifier=live", "", 204)
	fc.do("PUT", "/functions/inst/concurrency", `{"reservedConcurrency":0}`, 200)
	fc.fails("POST", "/functions/inst/invocations", "{}", 429, "ResourceThrottled", "")
}

// TestFCTags: TagResources, UntagResources and ListTagResources on
// functions by name or ARN, the filters and pages, and the refusals.
func TestFCTags(t *testing.T) {
	n := nodetest.Start(t, nil)
	fc := newFCAPI(t, n)
	c := client(n)
	for _, name := range []string{"tga", "tgb"} {
		createPy(t, c, name, pyZip(t))
	}
	fc.do("POST", "/tags-v2", `{"ResourceType":"FUNCTION","ResourceId":["tga","acs:fc:us-east-1:000000000000:functions/tgb"],"Tag":[{"Key":"team","Value":"x"},{"Key":"env","Value":"prod"}]}`, 200)
	fc.do("POST", "/tags-v2", `{"resourceType":"function","resourceId":["tgb"],"tag":[{"key":"env","value":"dev"}]}`, 200)
	type list struct {
		TagResources []struct{ ResourceId, ResourceType, TagKey, TagValue string }
		NextToken    string
	}
	var l list
	fc.json("GET", "/tags-v2?ResourceType=FUNCTION&ResourceId="+url.QueryEscape(`["tgb"]`), "", 200, &l)
	if len(l.TagResources) != 2 || l.TagResources[0].TagKey != "env" || l.TagResources[0].TagValue != "dev" ||
		l.TagResources[0].ResourceId != "acs:fc:us-east-1:000000000000:functions/tgb" || l.TagResources[0].ResourceType != "FUNCTION" {
		t.Errorf("ListTagResources of tgb = %+v", l)
	}
	l = list{}
	fc.json("GET", "/tags-v2?ResourceType=FUNCTION&Tag="+url.QueryEscape(`[{"Key":"env","Value":"prod"}]`), "", 200, &l)
	if len(l.TagResources) != 2 || l.TagResources[0].ResourceId != "acs:fc:us-east-1:000000000000:functions/tga" {
		t.Errorf("ListTagResources env=prod = %+v", l)
	}
	l = list{}
	fc.json("GET", "/tags-v2?ResourceType=FUNCTION&Limit=3", "", 200, &l)
	if len(l.TagResources) != 3 || l.NextToken != "tgb/team" {
		t.Errorf("ListTagResources page 1 = %+v", l)
	}
	l = list{}
	fc.json("GET", "/tags-v2?ResourceType=FUNCTION&NextToken=tgb/team", "", 200, &l)
	if len(l.TagResources) != 1 || l.TagResources[0].TagKey != "team" || l.NextToken != "" {
		t.Errorf("ListTagResources page 2 = %+v", l)
	}
	fc.do("DELETE", "/tags-v2?ResourceType=FUNCTION&ResourceId="+url.QueryEscape(`["tga"]`)+"&TagKey="+url.QueryEscape(`["team"]`), "", 200)
	fc.do("DELETE", "/tags-v2?ResourceType=FUNCTION&ResourceId="+url.QueryEscape(`["tgb"]`)+"&All=true", "", 200)
	l = list{}
	fc.json("GET", "/tags-v2?ResourceType=FUNCTION", "", 200, &l)
	if len(l.TagResources) != 1 || l.TagResources[0].TagKey != "env" || l.TagResources[0].ResourceId != "acs:fc:us-east-1:000000000000:functions/tga" {
		t.Errorf("ListTagResources after untagging = %+v", l)
	}
	var got struct{ Tags []struct{ Key, Value string } }
	fc.json("GET", "/functions/tga", "", 200, &got)
	if len(got.Tags) != 1 || got.Tags[0].Key != "env" {
		t.Errorf("GetFunction's tags = %+v", got)
	}

	fc.fails("POST", "/tags-v2", `{"ResourceType":"LAYER","ResourceId":["tga"],"Tag":[{"Key":"a","Value":"b"}]}`, 400, "InvalidArgument", "FUNCTION")
	fc.fails("POST", "/tags-v2", `{"ResourceType":"FUNCTION","ResourceId":["acs:fc:us-east-1:000000000000:functions/tga/live"],"Tag":[{"Key":"a","Value":"b"}]}`, 400, "InvalidArgument", "not to a version or alias")
	fc.fails("POST", "/tags-v2", `{"ResourceType":"FUNCTION","ResourceId":["tga"]}`, 400, "InvalidArgument", "Tag is required")
	fc.fails("POST", "/tags-v2", `{"ResourceType":"FUNCTION","ResourceId":["nope"],"Tag":[{"Key":"a","Value":"b"}]}`, 404, "FunctionNotFound", "nope")
	fc.fails("DELETE", "/tags-v2?ResourceType=FUNCTION&ResourceId="+url.QueryEscape(`["tga"]`), "", 400, "InvalidArgument", "TagKey is required")
	fc.fails("GET", "/tags-v2?ResourceType=FUNCTION&Tag=x", "", 400, "InvalidArgument", "Tag")
	fc.fails("GET", "/tags-v2", "", 400, "InvalidArgument", "ResourceType is required")
}
