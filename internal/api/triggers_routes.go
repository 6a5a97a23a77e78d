package api

// TriggerService manages triggers as the API uses it.
type TriggerService interface{}

func (s *Server) triggerRoutes() {}
