// Google's Go libraries, unmodified, with only `frontdoor env`'s variables set: every URL
// they use is Google's own, reaching frontdoor through its proxy and local CA.
//
// usage: go run . SERVICE_URL [CLOSED_URL]
// Prints one JSON object: platform detection, the metadata ID token's claims, the status
// of an idtoken.NewClient call to each URL, and idtoken.Validate's verdict on the token and
// on a copy with an altered signature.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"

	"cloud.google.com/go/compute/metadata"
	"google.golang.org/api/idtoken"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
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
	resp.Body.Close()
	return resp.StatusCode, nil
}

func run() error {
	ctx := context.Background()
	url := os.Args[1]
	out := map[string]any{"on_gce": metadata.OnGCE()}
	// OnGCE holds whenever GCE_METADATA_HOST is set; the project id is the metadata
	// server's own answer.
	project, err := metadata.ProjectIDWithContext(ctx)
	if err != nil {
		return fmt.Errorf("metadata project id: %w", err)
	}
	out["project_id"] = project
	email, err := metadata.EmailWithContext(ctx, "default")
	if err != nil {
		return fmt.Errorf("metadata email: %w", err)
	}
	out["email"] = email
	source, err := idtoken.NewTokenSource(ctx, url)
	if err != nil {
		return fmt.Errorf("NewTokenSource: %w", err)
	}
	token, err := source.Token()
	if err != nil {
		return fmt.Errorf("token: %w", err)
	}
	payload, err := idtoken.Validate(ctx, token.AccessToken, url)
	if err != nil {
		return fmt.Errorf("Validate: %w", err)
	}
	out["claims"] = payload.Claims
	forged := token.AccessToken[:len(token.AccessToken)-4] + "AAAA"
	if strings.HasSuffix(token.AccessToken, "AAAA") {
		forged = token.AccessToken[:len(token.AccessToken)-4] + "BBBB"
	}
	// Refused for its signature, not some other failure (the certificates unreachable).
	if _, err := idtoken.Validate(ctx, forged, url); err != nil {
		out["tampered"] = "refused: " + err.Error()
	} else {
		out["tampered"] = "accepted"
	}
	statuses := []int{}
	for _, u := range os.Args[1:] {
		s, err := status(ctx, u)
		if err != nil {
			return fmt.Errorf("call %s: %w", u, err)
		}
		statuses = append(statuses, s)
	}
	out["statuses"] = statuses
	return json.NewEncoder(os.Stdout).Encode(out)
}
