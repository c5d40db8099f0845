module github.com/pulsehq/pulse/deploy

go 1.26.0
