package api

// fcMoreRoutes answers the Function Compute operations Nimbus does not
// have (yet), each saying why; docs/fc-api.md has the same table.
func (s *Server) fcMoreRoutes() {
	const fn = fcPrefix + "/functions/{name}"
	notYet := func(pattern, action, why string) { s.fcHandle(pattern, action, fcNotYet(action+": "+why)) }
	const noSwitch = "Nimbus has no switch that stops a function's invocations; PutConcurrencyConfig with reservedConcurrency 0 refuses them all (ResourceThrottled), and DeleteConcurrencyConfig lets them in again"
	const later = "not yet in Nimbus's Function Compute dialect (the Lambda dialect has it: docs/fc-api.md)"
	for _, op := range []struct{ pattern, action, why string }{
		{"POST " + fcPrefix + "/layers/{layer}/versions", "CreateLayerVersion", later},
		{"GET " + fcPrefix + "/layers/{layer}/versions", "ListLayerVersions", later},
		{"GET " + fcPrefix + "/layers/{layer}/versions/{version}", "GetLayerVersion", later},
		{"DELETE " + fcPrefix + "/layers/{layer}/versions/{version}", "DeleteLayerVersion", later},
		{"GET " + fcPrefix + "/layerarn/{arn}", "GetLayerVersionByArn", later},
		{"GET " + fcPrefix + "/layers", "ListLayers", later},
		{"PUT " + fcPrefix + "/layers/{layer}/acl", "PutLayerACL", "Nimbus's layers are the node's; there are no other accounts to share them with"},
		{"PUT " + fn + "/scaling-config", "PutScalingConfig", "Nimbus scales on demand up to the reserved concurrency (PutConcurrencyConfig); it has no minimum/maximum instance scaling config"},
		{"GET " + fn + "/scaling-config", "GetScalingConfig", "Nimbus has no scaling config"},
		{"DELETE " + fn + "/scaling-config", "DeleteScalingConfig", "Nimbus has no scaling config"},
		{"GET " + fcPrefix + "/scaling-configs", "ListScalingConfigs", "Nimbus has no scaling config"},
		{"POST " + fn + "/invoke/disable", "DisableFunctionInvocation", noSwitch},
		{"POST " + fn + "/invoke/enable", "EnableFunctionInvocation", noSwitch},
		{"POST " + fn + "/sessions", "CreateSession", "Nimbus has no session affinity"},
		{"GET " + fn + "/sessions", "ListSessions", "Nimbus has no session affinity"},
		{"GET " + fn + "/sessions/{id}", "GetSession", "Nimbus has no session affinity"},
		{"PUT " + fn + "/sessions/{id}", "UpdateSession", "Nimbus has no session affinity"},
		{"DELETE " + fn + "/sessions/{id}", "DeleteSession", "Nimbus has no session affinity"},
		{"PUT " + fn + "/sessions/{id}/pause", "PauseSession", "Nimbus has no session affinity"},
		{"PUT " + fn + "/sessions/{id}/resume", "ResumeSession", "Nimbus has no session affinity"},
		{"POST " + fn + "/vpc-bindings", "CreateVpcBinding", "Nimbus's instances have no VPC"},
		{"GET " + fn + "/vpc-bindings", "ListVpcBindings", "Nimbus's instances have no VPC"},
		{"DELETE " + fn + "/vpc-bindings/{id}", "DeleteVpcBinding", "Nimbus's instances have no VPC"},
		{"POST " + fcPrefix + "/custom-domains", "CreateCustomDomain", "Nimbus has no custom domains: function URLs are served at /fn/<name>/ (docs/function-urls.md)"},
		{"GET " + fcPrefix + "/custom-domains", "ListCustomDomains", "Nimbus has no custom domains"},
		{"GET " + fcPrefix + "/custom-domains/{domain}", "GetCustomDomain", "Nimbus has no custom domains"},
		{"PUT " + fcPrefix + "/custom-domains/{domain}", "UpdateCustomDomain", "Nimbus has no custom domains"},
		{"DELETE " + fcPrefix + "/custom-domains/{domain}", "DeleteCustomDomain", "Nimbus has no custom domains"},
		{"PUT " + fcPrefix + "/resource-groups", "ChangeResourceGroup", "Nimbus has no resource groups"},
		{"GET " + fcPrefix + "/regions", "DescribeRegions", "a Nimbus node serves one region, its --region"},
	} {
		notYet(op.pattern, op.action, op.why)
	}
}
