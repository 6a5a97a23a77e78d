package api

// AsyncService is the Async Service as the API uses it.
type AsyncService interface{}

func (s *Server) asyncRoutes() {}
