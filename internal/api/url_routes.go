package api

// urlRoutes serves function URLs (HTTP triggers).
func (s *Server) urlRoutes() {}
