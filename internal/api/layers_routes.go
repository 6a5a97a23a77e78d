package api

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"sort"
	"strconv"

	"github.com/nimbus-serverless/nimbus"
	"github.com/nimbus-serverless/nimbus/internal/registry"
)

// Layers are account-wide: any key that may read reads them, and admin and
// developer keys (whatever their functions) publish and delete them. Their
// routes name no function ({layer}, not {name}).

const (
	layersPath          = "/2018-10-31/layers"
	layerVersionsPath   = layersPath + "/{layer}/versions"
	layerVersionPath    = layerVersionsPath + "/{version}"
	layerPublishPattern = "POST " + layerVersionsPath
)

func init() { codeUploads[layerPublishPattern] = true }

func (s *Server) layerRoutes() {
	s.handle(layerPublishPattern, s.layersPublish)
	s.handle("GET "+layerVersionsPath, s.layersListVersions)
	s.handle("GET "+layerVersionPath, s.layersGet)
	s.handle("DELETE "+layerVersionPath, s.layersDelete)
	s.handle("GET "+layersPath, s.layersList) // and GetLayerVersionByArn: ?find=LayerVersion
	s.handle("POST "+layerVersionPath+"/policy", s.layersAddPermission)
	s.handle("GET "+layerVersionPath+"/policy", s.layersGetPolicy)
	s.handle("DELETE "+layerVersionPath+"/policy/{sid}", s.layersRemovePermission)
	s.handle("GET /nimbus/v1/layers/{layer}/versions/{version}/content", s.layersDownload)
}

// layerVersionOutput is Lambda's GetLayerVersion (and PublishLayerVersion)
// response.
type layerVersionOutput struct {
	Content                 *layerContent `json:",omitempty"`
	LayerArn                string        `json:",omitempty"`
	LayerVersionArn         string
	Description             string
	CreatedDate             string
	Version                 int
	CompatibleRuntimes      []string `json:",omitempty"`
	CompatibleArchitectures []string `json:",omitempty"`
	LicenseInfo             string   `json:",omitempty"`
}

type layerContent struct {
	Location   string
	CodeSha256 string
	CodeSize   int64
}

func (s *Server) layerArn(name string) string {
	return "arn:aws:lambda:" + s.cfg.Region + ":" + s.cfg.Account + ":layer:" + name
}

func (s *Server) layerVersionArn(name string, n int) string {
	return s.layerArn(name) + ":" + strconv.Itoa(n)
}

// layerOutput is v as GetLayerVersion shows it; the list items leave out
// Content and LayerArn.
func (s *Server) layerOutput(r *http.Request, v *registry.LayerVersion, full bool) layerVersionOutput {
	out := layerVersionOutput{
		LayerVersionArn: s.layerVersionArn(v.Name, v.Version), Description: v.Description,
		CreatedDate: v.Created.UTC().Format(lambdaTime), Version: v.Version,
		CompatibleRuntimes: v.CompatibleRuntimes, CompatibleArchitectures: v.CompatibleArchitectures,
		LicenseInfo: v.LicenseInfo,
	}
	if full {
		out.LayerArn = s.layerArn(v.Name)
		out.Content = &layerContent{
			Location:   "http://" + r.Host + "/nimbus/v1/layers/" + v.Name + "/versions/" + strconv.Itoa(v.Version) + "/content",
			CodeSha256: lambdaSHA(v.CodeSHA256), CodeSize: v.CodeSize,
		}
	}
	return out
}

type publishLayerRequest struct {
	Description string
	Content     struct {
		ZipFile         []byte
		S3Bucket        string
		S3Key           string
		S3ObjectVersion string
	}
	CompatibleRuntimes      []string
	CompatibleArchitectures []string
	LicenseInfo             string
}

// layersPublish is PublishLayerVersion.
func (s *Server) layersPublish(w http.ResponseWriter, r *http.Request) error {
	var req publishLayerRequest
	if err := decodeStrictLimit(w, r, s.cfg.MaxCodeBody, &req); err != nil {
		return err
	}
	if req.Content.S3Bucket != "" || req.Content.S3Key != "" {
		return nimbus.Invalidf("Content.S3Bucket is not supported: Nimbus has no S3; send the zip in Content.ZipFile")
	}
	v, err := s.reg.PublishLayer(r.Context(), registry.LayerInput{
		Name: r.PathValue("layer"), Description: req.Description, LicenseInfo: req.LicenseInfo,
		CompatibleRuntimes: req.CompatibleRuntimes, CompatibleArchitectures: req.CompatibleArchitectures,
	}, req.Content.ZipFile)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusCreated, s.layerOutput(r, v, true))
}

// layerVersion parses the {layer} and {version} path values.
func layerVersion(r *http.Request) (string, int, error) {
	name, err := registry.ParseLayerName(r.PathValue("layer"))
	if err != nil {
		return "", 0, err
	}
	n, err := strconv.Atoi(r.PathValue("version"))
	if err != nil {
		return "", 0, nimbus.Errorf(nimbus.ErrValidation, "1 validation error detected: Value '%s' at 'versionNumber' failed to satisfy constraint: Member must be a number", r.PathValue("version"))
	}
	return name, n, nil
}

// loadLayerVersion loads the layer version the request's path names.
func (s *Server) loadLayerVersion(r *http.Request) (*registry.LayerVersion, error) {
	name, n, err := layerVersion(r)
	if err != nil {
		return nil, err
	}
	return s.reg.Layer(r.Context(), name, n)
}

// layersGet is GetLayerVersion.
func (s *Server) layersGet(w http.ResponseWriter, r *http.Request) error {
	v, err := s.loadLayerVersion(r)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, s.layerOutput(r, v, true))
}

// layersGetByArn is GetLayerVersionByArn.
func (s *Server) layersGetByArn(w http.ResponseWriter, r *http.Request) error {
	name, n, err := s.parseLayerArn(r.URL.Query().Get("Arn"))
	if err != nil {
		return err
	}
	v, err := s.reg.Layer(r.Context(), name, n)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, s.layerOutput(r, v, true))
}

// parseLayerArn parses a layer version's ARN of this node's region and
// account.
func (s *Server) parseLayerArn(arn string) (string, int, error) {
	name, n, region, account, err := registry.ParseLayerArn(arn)
	if err != nil {
		return "", 0, err
	}
	if region != s.cfg.Region || account != s.cfg.Account {
		return "", 0, nimbus.Invalidf("Layer version %s does not exist: this node's layers are in region %s, account %s", arn, s.cfg.Region, s.cfg.Account)
	}
	return name, n, nil
}

// layersDelete is DeleteLayerVersion.
func (s *Server) layersDelete(w http.ResponseWriter, r *http.Request) error {
	name, n, err := layerVersion(r)
	if err != nil {
		return err
	}
	if err := s.reg.DeleteLayer(r.Context(), name, n); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// layerFilter is the CompatibleRuntime and CompatibleArchitecture of a
// list: a version matches when it lists them (or lists none).
type layerFilter struct{ runtime, arch string }

func (f layerFilter) match(v *registry.LayerVersion) bool {
	return (f.runtime == "" || len(v.CompatibleRuntimes) == 0 || slices.Contains(v.CompatibleRuntimes, f.runtime)) &&
		(f.arch == "" || len(v.CompatibleArchitectures) == 0 || slices.Contains(v.CompatibleArchitectures, f.arch))
}

// listPage reads Marker (an index) and MaxItems (1 to 50, default 50).
func listPage(r *http.Request) (from, max int, err error) {
	q := r.URL.Query()
	max = 50
	if m := q.Get("MaxItems"); m != "" {
		if max, err = strconv.Atoi(m); err != nil || max < 1 || max > 50 {
			return 0, 0, nimbus.Errorf(nimbus.ErrValidation, "1 validation error detected: Value '%s' at 'maxItems' failed to satisfy constraint: Member must have value between 1 and 50", m)
		}
	}
	if m := q.Get("Marker"); m != "" {
		if from, err = strconv.Atoi(m); err != nil || from < 0 {
			return 0, 0, nimbus.Invalidf("Marker %q is invalid: pass the NextMarker of the previous page", m)
		}
	}
	return from, max, nil
}

func page[T any](items []T, from, max int) ([]T, string) {
	if from > len(items) {
		from = len(items)
	}
	end := min(from+max, len(items))
	next := ""
	if end < len(items) {
		next = strconv.Itoa(end)
	}
	return items[from:end], next
}

type layersListItem struct {
	LayerName             string
	LayerArn              string
	LatestMatchingVersion layerVersionOutput
}

// layersList is ListLayers, or GetLayerVersionByArn with find=LayerVersion.
func (s *Server) layersList(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	if q.Get("find") == "LayerVersion" {
		return s.layersGetByArn(w, r)
	}
	from, max, err := listPage(r)
	if err != nil {
		return err
	}
	all, err := s.reg.LayerVersions(r.Context())
	if err != nil {
		return err
	}
	f := layerFilter{q.Get("CompatibleRuntime"), q.Get("CompatibleArchitecture")}
	items := []layersListItem{}
	for _, name := range sortedNames(all) {
		for _, v := range all[name] { // newest first
			if f.match(v) {
				items = append(items, layersListItem{LayerName: name, LayerArn: s.layerArn(name),
					LatestMatchingVersion: s.layerOutput(r, v, false)})
				break
			}
		}
	}
	items, next := page(items, from, max)
	return writeJSON(w, http.StatusOK, struct {
		Layers     []layersListItem
		NextMarker string `json:",omitempty"`
	}{items, next})
}

func sortedNames(m map[string][]*registry.LayerVersion) []string {
	names := make([]string, 0, len(m))
	for n := range m {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// layersListVersions is ListLayerVersions, newest first.
func (s *Server) layersListVersions(w http.ResponseWriter, r *http.Request) error {
	name, err := registry.ParseLayerName(r.PathValue("layer"))
	if err != nil {
		return err
	}
	from, max, err := listPage(r)
	if err != nil {
		return err
	}
	all, err := s.reg.LayerVersions(r.Context())
	if err != nil {
		return err
	}
	q := r.URL.Query()
	f := layerFilter{q.Get("CompatibleRuntime"), q.Get("CompatibleArchitecture")}
	items := []layerVersionOutput{}
	for _, v := range all[name] {
		if f.match(v) {
			items = append(items, s.layerOutput(r, v, false))
		}
	}
	items, next := page(items, from, max)
	return writeJSON(w, http.StatusOK, struct {
		LayerVersions []layerVersionOutput
		NextMarker    string `json:",omitempty"`
	}{items, next})
}

type addLayerPermissionRequest struct {
	StatementId    string
	Action         string
	Principal      string
	OrganizationId string
}

// layersAddPermission is AddLayerVersionPermission.
func (s *Server) layersAddPermission(w http.ResponseWriter, r *http.Request) error {
	name, n, err := layerVersion(r)
	if err != nil {
		return err
	}
	var req addLayerPermissionRequest
	if err := decodeStrictLimit(w, r, maxConfigBody, &req); err != nil {
		return err
	}
	st := registry.LayerStatement{Sid: req.StatementId, Action: req.Action, Principal: req.Principal, OrganizationID: req.OrganizationId}
	rev, err := s.reg.AddLayerPermission(r.Context(), name, n, st, r.URL.Query().Get("RevisionId"))
	if err != nil {
		return err
	}
	b, err := json.Marshal(s.layerStatement(name, n, st))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusCreated, struct{ Statement, RevisionId string }{string(b), rev})
}

// policyStatement is a statement of an IAM policy document.
type policyStatement struct {
	Sid       string
	Effect    string
	Principal any
	Action    string
	Resource  string
	Condition map[string]map[string]string `json:",omitempty"`
}

// layerStatement is st as Lambda shows it in a layer version's policy.
func (s *Server) layerStatement(name string, n int, st registry.LayerStatement) policyStatement {
	out := policyStatement{Sid: st.Sid, Effect: "Allow", Principal: "*", Action: st.Action,
		Resource: s.layerVersionArn(name, n)}
	if st.Principal != "*" {
		out.Principal = map[string]string{"AWS": "arn:aws:iam::" + st.Principal + ":root"}
	}
	if st.OrganizationID != "" {
		out.Condition = map[string]map[string]string{"StringEquals": {"aws:PrincipalOrgID": st.OrganizationID}}
	}
	return out
}

// layersGetPolicy is GetLayerVersionPolicy.
func (s *Server) layersGetPolicy(w http.ResponseWriter, r *http.Request) error {
	v, err := s.loadLayerVersion(r)
	if err != nil {
		return err
	}
	if len(v.Policy) == 0 {
		return nimbus.Errorf(nimbus.ErrNotFound, "No policy is associated with the given resource.")
	}
	doc := struct {
		Version   string
		Id        string
		Statement []policyStatement
	}{Version: "2012-10-17", Id: "default"}
	for _, st := range v.Policy {
		doc.Statement = append(doc.Statement, s.layerStatement(v.Name, v.Version, st))
	}
	b, err := json.Marshal(doc)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, struct{ Policy, RevisionId string }{string(b), v.PolicyRevision})
}

// layersRemovePermission is RemoveLayerVersionPermission.
func (s *Server) layersRemovePermission(w http.ResponseWriter, r *http.Request) error {
	name, n, err := layerVersion(r)
	if err != nil {
		return err
	}
	if err := s.reg.RemoveLayerPermission(r.Context(), name, n, r.PathValue("sid"), r.URL.Query().Get("RevisionId")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// layersDownload serves a layer version's zip (its Content.Location).
func (s *Server) layersDownload(w http.ResponseWriter, r *http.Request) error {
	v, err := s.loadLayerVersion(r)
	if err != nil {
		return err
	}
	rc, err := s.reg.Code(r.Context(), v.CodeSHA256)
	if err != nil {
		return err
	}
	defer rc.Close()
	w.Header().Set("Content-Type", "application/zip")
	w.Header().Set("Content-Length", strconv.FormatInt(v.CodeSize, 10))
	if _, err := io.Copy(w, rc); err != nil {
		s.log.Warn("send layer", "layer", v.Name, nimbus.LogErr, err)
	}
	return nil
}

// functionLayer is a function's layers as its configuration shows them.
type functionLayer struct {
	Arn      string
	CodeSize int64
}

// layersOf returns fn's layers with their sizes (0 for one this node
// cannot read now).
func (s *Server) layersOf(fn *nimbus.Function) []functionLayer {
	if len(fn.Layers) == 0 {
		return nil
	}
	_, sizes, _ := s.reg.LayerCode(context.Background(), fn.Layers)
	out := make([]functionLayer, len(fn.Layers))
	for i, arn := range fn.Layers {
		out[i].Arn = arn
		if i < len(sizes) {
			out[i].CodeSize = sizes[i]
		}
	}
	return out
}

// checkLayerArns checks that the function's layer ARNs are this node's,
// and writes each as this node spells it (the aws partition).
func (s *Server) checkLayerArns(arns []string) error {
	for i, arn := range arns {
		name, n, err := s.parseLayerArn(arn)
		if err != nil {
			return err
		}
		arns[i] = s.layerVersionArn(name, n)
	}
	return nil
}
