from ctxpose.cli import main

main()
