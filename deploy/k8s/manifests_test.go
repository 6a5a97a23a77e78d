// Package k8s holds the Kubernetes manifests of a three-node Nimbus
// cluster (docs/cluster.md); its test decodes them strictly into the
// Kubernetes API types, so a misspelt or misplaced field fails CI.
package k8s

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

// decode reads path strictly (unknown or duplicate fields are errors) into v.
func decode(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.UnmarshalStrict(b, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

func TestManifests(t *testing.T) {
	files, err := filepath.Glob("*.yaml")
	if err != nil || len(files) != 3 {
		t.Fatalf("manifests: %v %v, want 3", files, err)
	}
	var sts appsv1.StatefulSet
	var peers, api corev1.Service
	decode(t, "statefulset.yaml", &sts)
	decode(t, "service-peers.yaml", &peers)
	decode(t, "service.yaml", &api)
	if sts.Kind != "StatefulSet" || peers.Kind != "Service" || api.Kind != "Service" {
		t.Fatalf("kinds: %s %s %s", sts.Kind, peers.Kind, api.Kind)
	}

	// The pods' stable names come from the headless Service.
	if sts.Spec.ServiceName != peers.Name || peers.Spec.ClusterIP != corev1.ClusterIPNone || !peers.Spec.PublishNotReadyAddresses {
		t.Errorf("serviceName %q, headless %q (clusterIP %q, publishNotReadyAddresses %v)",
			sts.Spec.ServiceName, peers.Name, peers.Spec.ClusterIP, peers.Spec.PublishNotReadyAddresses)
	}
	if sts.Spec.PodManagementPolicy != appsv1.ParallelPodManagement {
		t.Errorf("podManagementPolicy %q: the first pod waits for its peers, so they must start together", sts.Spec.PodManagementPolicy)
	}
	for _, s := range []corev1.Service{peers, api} {
		for k, v := range s.Spec.Selector {
			if sts.Spec.Template.Labels[k] != v {
				t.Errorf("service %s selects %s=%s, which the pods do not have", s.Name, k, v)
			}
		}
	}
	if n := sts.Spec.Replicas; n == nil || *n != 3 {
		t.Fatalf("replicas %v, want 3", n)
	}

	c := sts.Spec.Template.Spec.Containers[0]
	flags := map[string]string{}
	for _, a := range c.Args[1:] {
		k, v, _ := strings.Cut(a, "=")
		flags[k] = v
	}
	if c.Args[0] != "serve" || flags["--cluster-listen"] != "0.0.0.0:6222" {
		t.Errorf("args %v", c.Args)
	}
	// --peers names every pod by its stable DNS name.
	for i := range 3 {
		want := peerName(sts.Name, i, peers.Name) + ":6222"
		if !slices.Contains(strings.Split(flags["--peers"], ","), want) {
			t.Errorf("--peers %q lacks %s", flags["--peers"], want)
		}
	}
	if sc := c.SecurityContext; sc == nil || sc.Privileged == nil || !*sc.Privileged {
		t.Error("the sandbox needs a privileged container")
	}
	if len(c.Env) == 0 || c.Env[0].Name != "NIMBUS_NODE_KEY" || c.Env[0].ValueFrom == nil || c.Env[0].ValueFrom.SecretKeyRef == nil {
		t.Errorf("env %v: every member needs the same node key, from a Secret", c.Env)
	}
	if len(sts.Spec.VolumeClaimTemplates) != 1 || c.VolumeMounts[0].Name != sts.Spec.VolumeClaimTemplates[0].Name ||
		c.VolumeMounts[0].MountPath != flags["--data-dir"] {
		t.Errorf("the data dir %q is not the volume claim's mount %v", flags["--data-dir"], c.VolumeMounts)
	}
}

func peerName(sts string, i int, svc string) string {
	return sts + "-" + string(rune('0'+i)) + "." + svc + ".default.svc.cluster.local"
}
