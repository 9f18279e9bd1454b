from enclave_backend.cli import main

raise SystemExit(main())
