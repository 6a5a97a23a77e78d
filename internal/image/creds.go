package image

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
)

// LoadCredentials reads a registry credentials file: a JSON object from
// registry host ("host:port") to {"username": .., "password": ..} or
// {"token": ..} (a bearer token sent as it is) or {"identitytoken": ..} (an
// OAuth2 refresh token); or Docker's config.json, whose "auths" object maps
// hosts to {"auth": base64("user:pass")} (or "username"/"password",
// "registrytoken", "identitytoken"). Hosts given as URLs
// ("https://host/v1/") are reduced to the host. Its errors name the file and
// the host, never a secret.
func LoadCredentials(path string) (map[string]Credential, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("registry credentials: %w", err)
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(b, &top); err != nil {
		return nil, fmt.Errorf("registry credentials %s: not a JSON object", path)
	}
	if auths, ok := top["auths"]; ok {
		top = nil
		if err := json.Unmarshal(auths, &top); err != nil {
			return nil, fmt.Errorf("registry credentials %s: \"auths\" is not a JSON object", path)
		}
	}
	out := make(map[string]Credential, len(top))
	for host, raw := range top {
		var e struct {
			Username, Password, Token, Auth string
			RegistryToken                   string `json:"registrytoken"`
			IdentityToken                   string `json:"identitytoken"`
		}
		if err := json.Unmarshal(raw, &e); err != nil {
			return nil, fmt.Errorf("registry credentials %s: the entry of %q is not an object of strings", path, host)
		}
		c := Credential{Username: e.Username, Password: e.Password, Token: e.Token, IdentityToken: e.IdentityToken}
		if c.Token == "" {
			c.Token = e.RegistryToken
		}
		if e.Auth != "" {
			user, pass, err := decodeAuth(e.Auth)
			if err != nil {
				return nil, fmt.Errorf("registry credentials %s: the \"auth\" of %q: %w", path, host, err)
			}
			c.Username, c.Password = user, pass
		}
		if c == (Credential{}) {
			continue // Docker keeps empty entries for hosts whose secrets are in a helper
		}
		if (c.Username == "") != (c.Password == "") {
			return nil, fmt.Errorf("registry credentials %s: the entry of %q has a username without a password or the other way round", path, host)
		}
		out[hostOf(host)] = c
	}
	return out, nil
}

func decodeAuth(s string) (user, pass string, err error) {
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return "", "", errors.New("not base64")
	}
	user, pass, ok := strings.Cut(string(b), ":")
	if !ok {
		return "", "", errors.New("not base64 of user:password")
	}
	return user, pass, nil
}

// hostOf reduces "https://index.docker.io/v1/" to "index.docker.io".
func hostOf(k string) string {
	k = strings.TrimPrefix(strings.TrimPrefix(k, "https://"), "http://")
	if i := strings.IndexByte(k, '/'); i >= 0 {
		k = k[:i]
	}
	return k
}
