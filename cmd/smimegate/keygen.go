package main

import "errors"

// runKeygen is being written; this placeholder keeps the package building meanwhile.
func runKeygen(args []string) error { return errors.New("not built yet") }
