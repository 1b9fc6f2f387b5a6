#!/usr/bin/python3
import harness
if __name__ == "__main__":
    harness.main()
