package cli

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/slipway-deploy/slipway/internal/config"
	"github.com/slipway-deploy/slipway/internal/scaffold"
)

type initOptions struct {
	force bool
}

func newInitCmd(g *globalOptions, streams IO) *cobra.Command {
	opts := &initOptions{}
	cmd := &cobra.Command{
		Use:   "init",
		Short: "Write a commented starter slipway.yml for the project in this directory",
		Long: `init looks at the project (composer.json with laravel/framework or symfony,
package.json, go.mod, a static site) and writes a commented slipway.yml with the
matching recipe and a demo stage that deploys to this machine. It asks nothing,
and never overwrites an existing file without --force.`,
		Example: `  slipway init && slipway deploy demo
  slipway init -c deploy/slipway.yml --force`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error { return runInit(g, streams, opts) },
	}
	cmd.Flags().BoolVar(&opts.force, "force", false, "overwrite an existing file")
	setExitStatus(cmd, ExitOK, ExitFailed, ExitUsage)
	return cmd
}

func runInit(g *globalOptions, streams IO, opts *initOptions) error {
	path := g.configFile
	if _, err := os.Stat(path); err == nil && !opts.force {
		return &UserError{Msg: fmt.Sprintf("%s already exists; keep it, or overwrite it with slipway init --force", path)}
	} else if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	project := scaffold.Detect(filepath.Dir(path))
	if err := os.WriteFile(path, scaffold.Render(project), 0o644); err != nil {
		return err
	}
	// What init writes must load: check it as a deploy would.
	if _, err := config.Load(path); err != nil {
		return fmt.Errorf("the starter %s does not load (a bug, please report it): %w", path, err)
	}
	fmt.Fprintf(streams.Err, "wrote %s for a %s project; try it here with: slipway deploy demo\n", path, project.Kind)
	return nil
}
