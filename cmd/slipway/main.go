// Command slipway deploys web applications with atomic releases over SSH.
package main

import (
	"context"
	"os"

	"github.com/slipway-deploy/slipway/internal/cli"
)

func main() {
	os.Exit(cli.Main(context.Background(), os.Args[1:], cli.IO{In: os.Stdin, Out: os.Stdout, Err: os.Stderr}))
}
