package cli

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"

	"github.com/nimbus-serverless/nimbus/internal/auth"
	"github.com/nimbus-serverless/nimbus/internal/node"
)

// Environment variables the CLI reads its credentials from, before the
// standard AWS ones.
const (
	AccessKeyEnv = "NIMBUS_ACCESS_KEY_ID"
	SecretKeyEnv = "NIMBUS_SECRET_ACCESS_KEY"
)

// credFlags are the credential flags.
type credFlags struct {
	accessKeyID, secretAccessKey, profile string
}

// credentials finds the key the CLI signs with, first found wins:
//  1. --access-key-id and --secret-access-key;
//  2. NIMBUS_ACCESS_KEY_ID and NIMBUS_SECRET_ACCESS_KEY;
//  3. AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN);
//  4. the profile named by --profile or AWS_PROFILE, in the AWS shared
//     files (AWS_SHARED_CREDENTIALS_FILE, AWS_CONFIG_FILE, or ~/.aws);
//  5. the profile "nimbus" of <data dir>/credentials, the file `nimbus
//     serve` writes on its first start (data dir: NIMBUS_DATA_DIR, else the
//     default one of `nimbus serve`);
//  6. the default profile of the AWS shared files.
//
// The AWS default profile comes after the node's own file, so that AWS
// credentials configured for AWS do not shadow the local admin key.
// Without any, requests go unsigned (the node refuses them unless it runs
// with --auth none) and source says where the CLI looked.
func (f credFlags) credentials(ctx context.Context) (creds aws.Credentials, source string, err error) {
	if f.accessKeyID != "" || f.secretAccessKey != "" {
		if f.accessKeyID == "" || f.secretAccessKey == "" {
			return creds, "", errors.New("--access-key-id and --secret-access-key go together")
		}
		return static(f.accessKeyID, f.secretAccessKey, ""), "flags", nil
	}
	if c, ok := fromEnv(AccessKeyEnv, SecretKeyEnv, ""); ok {
		return c, AccessKeyEnv, nil
	}
	if c, ok := fromEnv("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"); ok {
		return c, "AWS_ACCESS_KEY_ID", nil
	}
	profile := f.profile
	if profile == "" {
		profile = os.Getenv("AWS_PROFILE")
	}
	if profile != "" {
		c, err := sharedProfile(ctx, profile, nil)
		if err != nil {
			return creds, "", fmt.Errorf("credentials of profile %s: %w", profile, err)
		}
		return c, "profile " + profile, nil
	}
	local := localCredentialsPath()
	c, err := sharedProfile(ctx, auth.Profile, []string{local})
	if err == nil {
		return c, local, nil
	}
	if !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, errNoKeys) {
		return creds, "", fmt.Errorf("read %s: %w", local, err)
	}
	if c, err := sharedProfile(ctx, "default", nil); err == nil {
		return c, "profile default", nil
	}
	return creds, "none (no --access-key-id, " + AccessKeyEnv + ", AWS_ACCESS_KEY_ID or AWS_PROFILE, and no " + local + ")", nil
}

func static(id, secret, token string) aws.Credentials {
	return aws.Credentials{AccessKeyID: id, SecretAccessKey: secret, SessionToken: token, Source: "nimbus-cli"}
}

func fromEnv(idKey, secretKey, tokenKey string) (aws.Credentials, bool) {
	id, secret := os.Getenv(idKey), os.Getenv(secretKey)
	if id == "" || secret == "" {
		return aws.Credentials{}, false
	}
	token := ""
	if tokenKey != "" {
		token = os.Getenv(tokenKey)
	}
	return static(id, secret, token), true
}

// localCredentialsPath is the credentials file of the local node.
func localCredentialsPath() string {
	dir := os.Getenv("NIMBUS_DATA_DIR")
	if dir == "" {
		dir = node.DefaultDataDir()
	}
	return filepath.Join(dir, auth.CredentialsFile)
}

var errNoKeys = errors.New("the profile has no static access key")

// sharedProfile reads a profile's static keys from the given credentials
// files, or from the AWS shared files when files is nil.
func sharedProfile(ctx context.Context, profile string, files []string) (aws.Credentials, error) {
	if files != nil {
		for _, f := range files {
			if _, err := os.Stat(f); err != nil {
				return aws.Credentials{}, err
			}
		}
	}
	sc, err := config.LoadSharedConfigProfile(ctx, profile, func(o *config.LoadSharedConfigOptions) {
		switch {
		case files != nil:
			o.CredentialsFiles, o.ConfigFiles = files, []string{}
		default:
			// The SDK's loader reads these variables only through
			// LoadDefaultConfig: honour them as the AWS CLI does.
			if f := os.Getenv("AWS_SHARED_CREDENTIALS_FILE"); f != "" {
				o.CredentialsFiles = []string{f}
			}
			if f := os.Getenv("AWS_CONFIG_FILE"); f != "" {
				o.ConfigFiles = []string{f}
			}
		}
	})
	if err != nil {
		var notExist config.SharedConfigProfileNotExistError
		if errors.As(err, &notExist) {
			return aws.Credentials{}, errNoKeys
		}
		return aws.Credentials{}, err
	}
	if !sc.Credentials.HasKeys() {
		return aws.Credentials{}, errNoKeys
	}
	c := sc.Credentials
	c.Source = "nimbus-cli"
	return c, nil
}

// credentialError is an authentication failure, with where the CLI's key
// came from.
type credentialError struct {
	err    error
	keyID  string
	source string
}

func (e *credentialError) Error() string {
	if e.keyID == "" {
		return e.err.Error() + " (the request was not signed: credentials: " + e.source + ")"
	}
	return e.err.Error() + " (signed with access key " + e.keyID + " from " + e.source + ")"
}

func (e *credentialError) Unwrap() error { return e.err }

// withCredentialHint says which key the CLI used when the node refused it.
func withCredentialHint(err error, creds aws.Credentials, source string) error {
	var ae interface{ ErrorCode() string }
	if err == nil || !errors.As(err, &ae) {
		return err
	}
	switch ae.ErrorCode() {
	case "MissingAuthenticationTokenException", "UnrecognizedClientException", "InvalidSignatureException", "IncompleteSignatureException":
		return &credentialError{err: err, keyID: creds.AccessKeyID, source: source}
	}
	return err
}
