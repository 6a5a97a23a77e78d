package api

// urlRoutes serves function URLs (HTTP triggers) and Lambda's function URL
// configuration API.
func (s *Server) urlRoutes() {
	// Public: the URL's own auth type applies, not the API's authenticator.
	s.mux.HandleFunc(urlPrefix+"{name}", s.urlServe)
	s.mux.HandleFunc(urlPrefix+"{name}/{path...}", s.urlServe)

	const fn = "/2021-10-31/functions/{name}"
	s.handle("POST "+fn+"/url", s.urlConfigCreate)
	s.handle("GET "+fn+"/url", s.urlConfigGet)
	s.handle("PUT "+fn+"/url", s.urlConfigUpdate)
	s.handle("DELETE "+fn+"/url", s.urlConfigDelete)
	s.handle("GET "+fn+"/urls", s.urlConfigList)
}
