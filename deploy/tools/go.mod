module github.com/pulsehq/pulse/deploy/tools

go 1.26.0
