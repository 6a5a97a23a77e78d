package auth

import (
	"fmt"
	"os"
	"path/filepath"
)

// CredentialsFile is the file, in a node's data directory, where the node
// writes its first admin key, in the AWS shared-credentials format.
const CredentialsFile = "credentials"

// Profile is the profile of that file.
const Profile = "nimbus"

// WriteCredentials writes key as profile Profile to path, in the AWS
// shared-credentials format, mode 0600, replacing the file atomically.
func WriteCredentials(path string, key Key) error {
	body := fmt.Sprintf("# Written by nimbus serve: the node's first admin key (%s).\n"+
		"# Use it with AWS_SHARED_CREDENTIALS_FILE=%s AWS_PROFILE=%s\n"+
		"[%s]\naws_access_key_id = %s\naws_secret_access_key = %s\n",
		key.Name, path, Profile, Profile, key.AccessKeyID, key.SecretAccessKey)
	tmp, err := os.CreateTemp(filepath.Dir(path), ".credentials-*")
	if err != nil {
		return fmt.Errorf("write credentials: %w", err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return fmt.Errorf("write credentials: %w", err)
	}
	if _, err := tmp.WriteString(body); err != nil {
		tmp.Close()
		return fmt.Errorf("write credentials: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("write credentials: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write credentials: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write credentials: %w", err)
	}
	return nil
}
