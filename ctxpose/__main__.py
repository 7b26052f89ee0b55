from ctxpose.cli.app import main

main()
