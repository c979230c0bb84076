"""The budget-tier router: tiers -> logged outcomes -> features -> policy -> frontier."""
