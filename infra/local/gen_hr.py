#!/usr/bin/env python3
"""Writes a synthetic HR export in the reference shape (deterministic for a given seed).

    employee_id,login,email,first_name,last_name,title,department,manager_login,status,nerm_roles

Managers point anywhere in the file (also to later rows) and form a tree, as in a real
organisation; names include non-ASCII letters; some titles carry quoted commas; a few employees
get NERM roles. `--bad N` appends N problem rows: the first three must be rejected (bad e-mail,
status, role), the next two are imported with a warning (unknown manager, own manager).

    python3 infra/local/gen_hr.py --rows 1000 --seed 1 > hr.csv
"""
import argparse
import csv
import random
import sys

FIRST = ["Ann", "Bob", "Carl", "Dörte", "Émile", "Fatima", "Gustav", "Hana", "Ivan", "Józef", "Kai", "Lena",
         "Mateo", "Noor", "Óscar", "Priya", "Quinn", "Raúl", "Siobhán", "Tomás", "Uma", "Vera", "Wen", "Zoë"]
LAST = ["Lee", "Ng", "Díaz", "Müller", "O'Brien", "Smith", "Kowalski", "Nguyễn", "García", "Rossi", "Sato", "Berg"]
TITLES = ["Engineer", "Senior Engineer", "Director, R&D", "Manager, Sales", "Analyst", "Designer", "Recruiter"]
DEPTS = ["R&D", "Sales", "Finance", "HR", "Operations", "Legal"]
STATUSES = ["Active"] * 18 + ["Leave", "Disabled"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=300)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--bad", type=int, default=0, help="problem rows appended at the end (see above)")
    ap.add_argument("--title-suffix", default="", help="appended to every title (to simulate a changed file)")
    args = ap.parse_args()
    rnd = random.Random(args.seed)
    out = csv.writer(sys.stdout, lineterminator="\n")
    out.writerow(["employee_id", "login", "email", "first_name", "last_name", "title", "department",
                  "manager_login", "status", "nerm_roles"])
    logins = [f"emp{i:06d}@example.com" for i in range(args.rows)]
    # A hidden order over the rows: each employee's manager comes before them in it (so the
    # managers form a tree, never a cycle), anywhere in the file.
    order = list(range(args.rows))
    rnd.shuffle(order)
    rank = {row: r for r, row in enumerate(order)}
    for i, login in enumerate(logins):
        first, last = rnd.choice(FIRST), rnd.choice(LAST)
        manager = "" if rank[i] == 0 else logins[order[rnd.randrange(rank[i])]]
        roles = rnd.choice(["", "", "", "", "Sponsor", "Manager", "Sponsor;Manager"])
        out.writerow([f"E{i:06d}", login, login, first, last, rnd.choice(TITLES) + args.title_suffix,
                      rnd.choice(DEPTS), manager, rnd.choice(STATUSES), roles])
    bad = [
        ["X000001", "bad.email@example.com", "not-an-email", "Bad", "Email", "Engineer", "R&D", "", "Active", ""],
        ["X000002", "bad.status@example.com", "bad.status@example.com", "Bad", "Status", "Engineer", "R&D", "",
         "Sabbatical", ""],
        ["X000003", "bad.role@example.com", "bad.role@example.com", "Bad", "Role", "Engineer", "R&D", "", "Active",
         "Overlord"],
        ["X000004", "ghost.report@example.com", "ghost.report@example.com", "Ghost", "Report", "Engineer", "R&D",
         "nobody@example.com", "Active", ""],
        ["X000005", "self.manager@example.com", "self.manager@example.com", "Self", "Manager", "Engineer", "R&D",
         "self.manager@example.com", "Active", ""],
    ]
    for row in bad[: args.bad]:
        out.writerow(row)


if __name__ == "__main__":
    main()
