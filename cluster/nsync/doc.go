// Package nsync keeps the namespaces of a volume's nodes in sync.
package nsync
