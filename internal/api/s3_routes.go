package api

// s3Routes receives S3 bucket event notifications for object-storage
// triggers.
func (s *Server) s3Routes() {}
