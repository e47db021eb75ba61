//go:build integration && !race

package main_test

const raceBuild = false
