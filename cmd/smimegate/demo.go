package main

import "errors"

// runDemo is being written; this placeholder keeps the package building meanwhile.
func runDemo(args []string) error { return errors.New("not built yet") }
