package deploy

import (
	"slices"
	"testing"

	"github.com/slipway-deploy/slipway/internal/config"
)

func TestFPMHooks(t *testing.T) {
	tests := []struct {
		run  string
		want FPMAction
	}{
		{"sudo systemctl restart php8.2-fpm", FPMRestart},
		{"sudo systemctl restart nginx php8.3-fpm", FPMRestart},
		{"sudo service php7.4-fpm restart", FPMRestart},
		{"sudo /etc/init.d/php8.1-fpm restart", FPMRestart},
		{"sudo killall php-fpm", FPMRestart},
		{"sudo systemctl stop php-fpm && sudo systemctl start php-fpm", FPMRestart},
		{"sudo systemctl reload php8.2-fpm", FPMReload},
		{"sudo service php-fpm reload", FPMReload},
		{"kill -USR2 $(cat /run/php/php8.2-fpm.pid)", FPMReload},
		{"sudo systemctl reload nginx", 0},
		{"php artisan queue:restart", 0},
		{"sudo systemctl restart horizon", 0},
		{"echo restart php-fpm later", 0},
	}
	for _, tt := range tests {
		found := FPMHooks(config.Hooks{AfterSwitch: []config.Hook{{Run: tt.run}}})
		var got FPMAction
		if len(found) == 1 {
			got = found[0].Action
		}
		if got != tt.want {
			t.Errorf("%q: action %d, want %d", tt.run, got, tt.want)
		}
	}
}

func TestParseFPMTimeouts(t *testing.T) {
	out := "/etc/php/8.2/fpm/php-fpm.conf=\n/etc/php/8.3/fpm/php-fpm.conf=30s\n/etc/php-fpm.conf=0\n/usr/local/etc/php-fpm.conf=1m\n"
	got := parseFPMTimeouts(out)
	want := []string{"/etc/php/8.2/fpm/php-fpm.conf", "/etc/php-fpm.conf"}
	if !slices.Equal(got, want) {
		t.Errorf("zero-timeout configs = %v, want %v", got, want)
	}
}
