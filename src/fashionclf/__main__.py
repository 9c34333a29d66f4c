from fashionclf.cli import main

main()
