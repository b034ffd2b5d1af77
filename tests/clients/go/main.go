// Google's Go libraries, unmodified, with only `frontdoor env`'s variables set (and
// GOOGLE_APPLICATION_CREDENTIALS where a cell reads a credentials file): every URL they use
// is Google's own, reaching frontdoor through its proxy and local CA.
//
// usage: go-client CELL SERVICE_URL CLOSED_URL
//
//	go-client verify AUDIENCE TOKENS_FILE
//	go-client grpc HOST CASE (grpc.go)
//
// Prints one JSON object, read by tests/it/client_matrix.rs. A value whose key starts with
// "token" is a token the test checks; "verifiers" maps each verifier to its verdict on
// every token of TOKENS_FILE (a JSON object of name to token).
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"

	"cloud.google.com/go/auth/credentials"
	authidtoken "cloud.google.com/go/auth/credentials/idtoken"
	"cloud.google.com/go/compute/metadata"
	"golang.org/x/oauth2/google"
	"google.golang.org/api/idtoken"
)

const cloudPlatform = "https://www.googleapis.com/auth/cloud-platform"

func main() {
	if len(os.Args) < 4 {
		fmt.Fprintln(os.Stderr, "usage: go-client CELL SERVICE_URL CLOSED_URL | verify AUDIENCE TOKENS_FILE")
		os.Exit(2)
	}
	out, err := run(context.Background(), os.Args[1], os.Args[2], os.Args[3])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if err := json.NewEncoder(os.Stdout).Encode(out); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func run(ctx context.Context, cell, url, other string) (map[string]any, error) {
	switch cell {
	case "platform":
		// OnGCE holds whenever GCE_METADATA_HOST is set; the project id is the metadata
		// server's own answer.
		project, err := metadata.ProjectIDWithContext(ctx)
		if err != nil {
			return nil, fmt.Errorf("metadata project id: %w", err)
		}
		email, err := metadata.EmailWithContext(ctx, "default")
		if err != nil {
			return nil, fmt.Errorf("metadata email: %w", err)
		}
		return map[string]any{"detected": metadata.OnGCE(), "project": project, "account": email}, nil
	case "metadata-access":
		creds, err := credentials.DetectDefault(&credentials.DetectOptions{Scopes: []string{cloudPlatform}})
		if err != nil {
			return nil, fmt.Errorf("DetectDefault: %w", err)
		}
		tok, err := creds.Token(ctx)
		if err != nil {
			return nil, fmt.Errorf("token: %w", err)
		}
		return map[string]any{"token": tok.Value}, nil
	case "metadata-id", "key-file", "impersonated", "external-id":
		// Both Go paths to an ID token: google.golang.org/api/idtoken (format=full on the
		// metadata server) and cloud.google.com/go/auth's idtoken.NewCredentials.
		return idTokens(ctx, url, cell == "impersonated" || cell == "external-id")
	case "external-access":
		found, err := google.FindDefaultCredentials(ctx, cloudPlatform)
		if err != nil {
			return nil, fmt.Errorf("FindDefaultCredentials: %w", err)
		}
		tok, err := found.TokenSource.Token()
		if err != nil {
			return nil, fmt.Errorf("x/oauth2 token: %w", err)
		}
		creds, err := credentials.DetectDefault(&credentials.DetectOptions{Scopes: []string{cloudPlatform}})
		if err != nil {
			return nil, fmt.Errorf("DetectDefault: %w", err)
		}
		auth, err := creds.Token(ctx)
		if err != nil {
			return nil, fmt.Errorf("auth token: %w", err)
		}
		return map[string]any{"token": tok.AccessToken, "token_auth": auth.Value}, nil
	case "call":
		statuses := []int{}
		for _, u := range []string{url, other} {
			s, err := status(ctx, u)
			if err != nil {
				return nil, fmt.Errorf("call %s: %w", u, err)
			}
			statuses = append(statuses, s)
		}
		return map[string]any{"statuses": statuses}, nil
	case "verify":
		return verify(ctx, url, other)
	case "grpc":
		return grpcCell(ctx, url, other)
	case "pubsub":
		return pubsubCell(ctx, url, other)
	}
	return nil, fmt.Errorf("unknown cell %q", cell)
}

// knownBug: for an impersonated_service_account or external_account file, auth's
// idtoken.NewCredentials hands the impersonation a plain HTTP client, so generateIdToken
// goes without credentials and Google answers 401 (googleapis/google-cloud-go#19939). Its
// error is reported as "library_bug" rather than failing the cell; if it ever succeeds,
// its token is checked like the other.
func idTokens(ctx context.Context, url string, knownBug bool) (map[string]any, error) {
	source, err := idtoken.NewTokenSource(ctx, url)
	if err != nil {
		return nil, fmt.Errorf("api idtoken.NewTokenSource: %w", err)
	}
	token, err := source.Token()
	if err != nil {
		return nil, fmt.Errorf("api idtoken token: %w", err)
	}
	creds, err := authidtoken.NewCredentials(&authidtoken.Options{
		Audience:           url,
		ComputeTokenFormat: authidtoken.ComputeTokenFormatFull,
	})
	if err != nil {
		return nil, fmt.Errorf("auth idtoken.NewCredentials: %w", err)
	}
	auth, err := creds.Token(ctx)
	if err != nil && knownBug {
		return map[string]any{"token": token.AccessToken, "library_bug": err.Error()}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("auth idtoken token: %w", err)
	}
	return map[string]any{"token": token.AccessToken, "token_auth": auth.Value}, nil
}

func status(ctx context.Context, url string) (int, error) {
	client, err := idtoken.NewClient(ctx, url)
	if err != nil {
		return 0, err
	}
	resp, err := client.Get(url + "/whoami")
	if err != nil {
		return 0, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, nil
}

// Each verifier at its defaults: the certificates from Google's URLs.
func verify(ctx context.Context, audience, file string) (map[string]any, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	tokens := map[string]string{}
	if err := json.Unmarshal(b, &tokens); err != nil {
		return nil, err
	}
	validator, err := authidtoken.NewValidator(nil)
	if err != nil {
		return nil, fmt.Errorf("NewValidator: %w", err)
	}
	api, auth := map[string]string{}, map[string]string{}
	for name, token := range tokens {
		api[name] = verdict(idtoken.Validate(ctx, token, audience))
		_, err := validator.Validate(ctx, token, audience)
		auth[name] = verdict(nil, err)
	}
	return map[string]any{"verifiers": map[string]any{
		"idtoken.Validate":                api,
		"auth idtoken.Validator.Validate": auth,
	}}, nil
}

func verdict(_ any, err error) string {
	if err != nil {
		return "refused: " + strings.ReplaceAll(err.Error(), "\n", " ")
	}
	return "accepted"
}
